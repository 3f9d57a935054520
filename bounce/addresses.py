"""Finding and normalising email addresses in bounce text.

Bounce reports quote addresses in every shape: ``rfc822;a@b``, ``<a@b>``,
``"a@b":``, ``a@b...``, ``mailto:a@b``. A permissive pattern finds the
candidates; flanker's RFC 5322 address parser (the required stack) has the
last word on whether a candidate is a usable ``addr-spec``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from flanker.addresslib import address as flanker_address

# Local part: dot-atom characters (RFC 5322 §3.2.3) plus the quoted form;
# domain: labels or an address literal.
ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~-])"
    r"((?:\"[^\"\r\n]{1,64}\"|[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*)"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\]))"
)
# Mail-system mailboxes never are the recipient a campaign sent to.
SYSTEM_LOCAL_PARTS = frozenset(
    {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "maildaemon"}
)


@lru_cache(maxsize=4096)
def normalise(candidate: str | None) -> str | None:
    """An addr-spec from a field value such as ``rfc822; <a@b>``, or None.

    The domain is lower-cased (RFC 5321 §2.4: domains are case-insensitive;
    the local part is kept as written)."""
    if not candidate:
        return None
    text = candidate.strip()
    if ";" in text and text.split(";", 1)[0].strip().lower() in ("rfc822", "rfc-822", "x400"):
        text = text.split(";", 1)[1].strip()
    match = ADDRESS.search(text)
    if not match:
        return None
    found = match.group(1).strip(".")
    if len(found) > 320:
        return None
    parsed = flanker_address.parse(found, addr_spec_only=True)
    if parsed is None:
        # flanker refuses some addresses real mail systems print (e.g.
        # quoted local parts with spaces): keep the literal form.
        return _lower_domain(found)
    return _lower_domain(str(parsed.address))


def _lower_domain(found: str) -> str:
    local, _, domain = found.rpartition("@")
    return f"{local}@{domain.lower()}"


def find_all(text: str) -> list[tuple[int, str]]:
    """Every address in ``text`` with its position, in order."""
    found: list[tuple[int, str]] = []
    for match in ADDRESS.finditer(text):
        value = match.group(1).strip(".")
        if "@" in value:
            found.append((match.start(1), value))
    return found


def is_system_address(value: str) -> bool:
    """``MAILER-DAEMON@…``, ``postmaster@…`` and the like."""
    return value.rpartition("@")[0].strip('"').lower() in SYSTEM_LOCAL_PARTS


def same(left: str | None, right: str | None) -> bool:
    return bool(left and right and left.lower() == right.lower())
