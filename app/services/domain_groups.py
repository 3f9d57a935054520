"""Recipient domain groups: which mailbox provider an address belongs to,
for per-domain pacing (SPEC §4).

Rules:

- Four groups: ``gmail`` (gmail.com, googlemail.com), ``yahoo`` (Yahoo,
  AOL and the Verizon mailboxes AOL hosts), ``outlook`` (Microsoft's
  consumer mail: Outlook.com, Hotmail, Live, MSN) and ``other``.
- ``GROUP_DOMAINS`` lists each group's domains. ``name.*`` stands for the
  provider's domain under a country code, directly or below ``co.``/``com.``
  (``yahoo.fr``, ``yahoo.co.uk``, ``hotmail.com.br``); generic domains are
  listed by name, and country codes sold as generic ones (``.io``, ``.co``,
  ``.me``, ``.tv`` …) are left out, so a company's own ``outlook.io`` or
  ``live.tv`` is ``other`` (the convention of the pre-flight DMARC table).
  Subdomains never match: nobody has a mailbox at ``mail.yahoo.com``.
- Only the domain counts (the part after the last ``@``), compared
  case-insensitively in its ASCII (IDNA) form, so ``GMail.COM``, a
  trailing dot or full-width letters change nothing, and a look-alike
  Unicode domain (a Cyrillic ``a`` in ``gmail.com``) is ``other``. Hosted
  domains (a company's Google Workspace) are ``other``: telling them needs
  an MX lookup, and pacing must not hang on DNS.
- One definition, two forms: each group's rule is one regular expression
  (``group_pattern``), which ``domain_group`` applies in Python and
  ``domain_group_sql`` in SQL (PostgreSQL ``~``; SQLAlchemy gives SQLite a
  ``REGEXP`` function), so the queue build computes groups set-based in its
  ``INSERT … SELECT`` and agrees with the Python function on every stored
  (normalised) address.
"""

from __future__ import annotations

import contextlib
import re
from functools import cache

from sqlalchemy import ColumnElement, case, func, literal

from app.models import DomainGroup

G = DomainGroup

GROUP_DOMAINS: dict[DomainGroup, tuple[str, ...]] = {
    G.GMAIL: ("gmail.com", "googlemail.com"),
    G.YAHOO: (
        "yahoo.com",
        "yahoo.*",
        "ymail.com",
        "rocketmail.com",
        "aol.com",
        "aol.*",
        "aim.com",
        "verizon.net",  # Verizon's mailboxes moved to AOL in 2017
    ),
    G.OUTLOOK: (
        "outlook.com",
        "outlook.*",
        "hotmail.com",
        "hotmail.*",
        "live.com",
        "live.*",
        "msn.com",
        "windowslive.com",
        "passport.com",
    ),
}

# Country codes sold as generic domains: a brand under them is not the
# provider's country site.
GENERIC_USE_COUNTRY_CODES = frozenset(
    {"ai", "cc", "co", "fm", "gg", "io", "ly", "me", "sh", "so", "to", "tv", "ws"}
)

# The part of a domain after "name." that makes a country domain. Written
# in the regular-expression subset PostgreSQL and Python share (non-capturing
# groups, a negative lookahead, \Z for the very end).
_COUNTRY_SUFFIX = (
    r"(?:(?:co|com)\.)?(?!(?:" + "|".join(sorted(GENERIC_USE_COUNTRY_CODES)) + r")\Z)[a-z]{2}"
)


def _domain_pattern(domain: str) -> str:
    if domain.endswith(".*"):
        return re.escape(domain[:-1]) + _COUNTRY_SUFFIX
    return re.escape(domain)


@cache
def group_pattern(group: DomainGroup) -> str:
    """The regular expression a lower-cased address (or ``@domain``) of
    ``group`` matches; anchored at the ``@`` and at the end, so only the
    whole domain counts. ``other`` has none: it is what no pattern matches."""
    alternatives = "|".join(_domain_pattern(domain) for domain in GROUP_DOMAINS[group])
    return f"@(?:{alternatives})\\Z"


def ascii_domain(address_or_domain: str) -> str:
    """The domain of an address (or a bare domain), lower-cased in its ASCII
    form: IDNA applies Unicode normalisation (full-width letters become
    ASCII) and spells other non-ASCII labels as ``xn--``. A domain IDNA
    refuses (an empty or over-long label) is only lower-cased: it matches
    no provider either way."""
    domain = address_or_domain.rpartition("@")[2].strip().rstrip(".")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return domain.lower()


def domain_group(address_or_domain: str) -> DomainGroup:
    """The domain group of an address or a bare domain (see the module's rules)."""
    at_domain = "@" + ascii_domain(address_or_domain)
    for group in GROUP_DOMAINS:
        if re.search(group_pattern(group), at_domain):
            return group
    return G.OTHER


def domain_group_sql(email: ColumnElement[str | None]) -> ColumnElement[str]:
    """``domain_group`` as a SQL expression over an address column, for
    set-based statements. Addresses are stored normalised (domain
    lower-cased and IDNA-normalised, ``app.services.addresses``), where it
    agrees with ``domain_group``; ``lower()`` keeps it so for rows written
    some other way. A NULL address is ``other``."""
    lowered = func.lower(email)
    return case(
        *(
            (lowered.regexp_match(literal(group_pattern(group))), literal(group.value))
            for group in GROUP_DOMAINS
        ),
        else_=literal(G.OTHER.value),
    )
