"""VERP: the envelope sender that names the queue item a bounce answers.

Every campaign message is sent with the return path
``<local>+<item>.<mac>@<domain>`` (SPEC §5): ``<item>`` is the queue item
id in decimal, ``<mac>`` the first ``MAC_BYTES`` of HMAC-SHA256 over the
decimal id under a key derived from the secret key, in lower-case base32.
A bounce goes back to that address (RFC 5321 §4.5.5: a DSN is sent to the
reverse-path), so the address alone says which message bounced, and only
Sluice can make one that verifies: a forged bounce cannot mark someone else's
address.

Rules:

- **Case-insensitive.** Mail systems may change the case of a local part
  (RFC 5321 §2.4 lets a server treat it case-insensitively), so the id is
  digits, the MAC lower-case base32, and decoding folds case.
- **Three answers.** ``decode`` tells an address that is not a VERP address
  (``NOT_VERP``), a valid one (``VALID`` with the item id) and one of the
  right shape whose MAC does not verify (``FORGED``: altered or made up,
  to be counted and never applied). "The right shape" is
  ``<local>+<digits>.<letters or digits>@<domain>``, so a truncated or
  altered MAC is forged, not ignored.
- **The mailto opt-out is not VERP.** ``<local>+unsubscribe-<token>@<domain>``
  (``List-Unsubscribe``'s mailto address, whose token the application
  verifies) is reported as ``UNSUBSCRIBE`` with the token, unverified.
- **Never raises** on input: anything malformed, oversized or non-ASCII is
  ``NOT_VERP``. MACs are compared with ``hmac.compare_digest``.
- **Cheap.** ``VerpCodec`` derives the key once; encoding copies a keyed
  HMAC (a couple of microseconds), so the dispatcher builds one codec per
  mass email and encodes per message.

Pure: no Flask, no database, no application imports.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

MAC_BYTES = 10  # 80 bits: 16 base32 characters
MAC_LENGTH = 16
# Ids are database integers: at most 2**63 - 1 (19 digits).
MAX_ITEM_ID = 2**63 - 1
# RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
MAX_LOCAL_PART = 64
# RFC 3696 errata: an address is at most 320 characters; longer input is
# never one of ours and never reaches a regex.
MAX_ADDRESS_LENGTH = 320
UNSUBSCRIBE_PREFIX = "unsubscribe-"
_KEY_LABEL = b"sluice verp return path"
# After the "<local>+" prefix: digits, a dot, a MAC-like run (any length, so
# an altered MAC is still recognised as an attempt).
_VERP_TAIL = re.compile(r"([0-9]{1,20})\.([a-z0-9]{1,64})")
_CANONICAL_ID = re.compile(r"0|[1-9][0-9]{0,18}")


class VerpKind(enum.StrEnum):
    NOT_VERP = "not_verp"
    VALID = "valid"
    FORGED = "forged"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class VerpResult:
    """What an address is: ``item_id`` for ``VALID``, ``token`` (unverified)
    for ``UNSUBSCRIBE``."""

    kind: VerpKind
    item_id: int | None = None
    token: str | None = None

    @property
    def valid(self) -> bool:
        return self.kind is VerpKind.VALID


NOT_VERP = VerpResult(VerpKind.NOT_VERP)


class VerpCodec:
    """Encodes and decodes the VERP addresses of one bounce mailbox
    (``local`` part and ``domain``) under ``secret``."""

    def __init__(self, *, local: str, domain: str, secret: str) -> None:
        if not secret:
            raise ValueError("a secret key is needed to sign VERP addresses")
        local, domain = local.strip(), domain.strip().lower()
        if not local or not domain or "@" in local or "@" in domain or "+" in local:
            raise ValueError(f"not a usable bounce address: {local!r} at {domain!r}")
        if not (local.isascii() and domain.isascii()):
            raise ValueError("the bounce address must be ASCII (it is folded and compared)")
        # The longest return path must still be a legal local part.
        if len(local) + 1 + 19 + 1 + MAC_LENGTH > MAX_LOCAL_PART:
            raise ValueError(
                f"the bounce address's local part {local!r} is too long for VERP"
                f" (at most {MAX_LOCAL_PART - 21 - MAC_LENGTH} characters)"
            )
        self.local = local
        self.domain = domain
        self._prefix = local.lower() + "+"
        key = hmac.digest(secret.encode(), _KEY_LABEL, "sha256")
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def mac(self, item_id: int) -> str:
        keyed = self._keyed.copy()
        keyed.update(str(item_id).encode("ascii"))
        digest = keyed.digest()[:MAC_BYTES]
        return base64.b32encode(digest).decode("ascii").lower()

    def encode(self, item_id: int) -> str:
        """``<local>+<item>.<mac>@<domain>``; item 0 (a test message) and
        negative or oversized ids are refused: they are never queue items."""
        if isinstance(item_id, bool) or not isinstance(item_id, int):
            raise TypeError(f"a queue item id is an int, not {type(item_id).__name__}")
        if not 0 < item_id <= MAX_ITEM_ID:
            raise ValueError(f"not a queue item id: {item_id}")
        return f"{self.local}+{item_id}.{self.mac(item_id)}@{self.domain}"

    def decode(self, address: object) -> VerpResult:
        """What ``address`` is (see the module's rules); never raises."""
        local = self._local_part(address)
        if local is None:
            return NOT_VERP
        tail = local[len(self._prefix) :]
        if tail.startswith(UNSUBSCRIBE_PREFIX):
            token = tail[len(UNSUBSCRIBE_PREFIX) :]
            return VerpResult(VerpKind.UNSUBSCRIBE, token=token) if token else NOT_VERP
        match = _VERP_TAIL.fullmatch(tail)
        if match is None:
            return NOT_VERP
        id_text, given_mac = match.groups()
        if _CANONICAL_ID.fullmatch(id_text) is None or int(id_text) > MAX_ITEM_ID:
            return VerpResult(VerpKind.FORGED)
        item_id = int(id_text)
        if item_id == 0 or not hmac.compare_digest(given_mac, self.mac(item_id)):
            return VerpResult(VerpKind.FORGED)
        return VerpResult(VerpKind.VALID, item_id=item_id)

    def _local_part(self, address: object) -> str | None:
        """The lower-cased local part of ``address`` when it is at our
        domain and starts with ``<local>+``; else None."""
        if not isinstance(address, str) or len(address) > MAX_ADDRESS_LENGTH:
            return None
        text = address.strip().strip("<>").strip().lower()
        if not text.isascii():
            return None
        local, at, domain = text.rpartition("@")
        if not at or domain.rstrip(".") != self.domain or not local.startswith(self._prefix):
            return None
        return local


def first_verified(codec: VerpCodec, addresses: Iterable[str]) -> tuple[VerpResult, str]:
    """The first address whose VERP MAC verifies, with its result; else the
    first forged one (``FORGED``); else ``NOT_VERP`` and "". Addresses come
    most trustworthy first (``BounceReport.return_addresses``)."""
    forged = ""
    for address in addresses:
        result = codec.decode(address)
        if result.kind is VerpKind.VALID:
            return result, address
        if result.kind is VerpKind.FORGED and not forged:
            forged = address
    return (VerpResult(VerpKind.FORGED), forged) if forged else (NOT_VERP, "")


@lru_cache(maxsize=8)
def codec_for(local: str, domain: str, secret: str) -> VerpCodec:
    """The codec of one bounce mailbox, made once (the key derivation is the
    costly part) and remembered."""
    return VerpCodec(local=local, domain=domain, secret=secret)


def encode(item_id: int, *, local: str, domain: str, secret: str) -> str:
    """The VERP address of queue item ``item_id`` (see ``VerpCodec.encode``)."""
    return codec_for(local, domain, secret).encode(item_id)


def decode(address: object, *, local: str, domain: str, secret: str) -> VerpResult:
    """What ``address`` is for this bounce mailbox (see ``VerpCodec.decode``)."""
    return codec_for(local, domain, secret).decode(address)
