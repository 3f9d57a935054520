"""The bounce mailbox's addresses: the plain bounce address, the VERP
return path of each campaign message (``bounce.verp``) and where the
``List-Unsubscribe`` mailto address lives.

Rules:

- The local part is the boot setting ``bounce_address``'s; the VERP domain
  is the runtime setting ``bounce_domain``, or the bounce address's own
  domain when that is empty. The mailto opt-out address stays at the bounce
  address's domain (``public_links``), so both domains must deliver to the
  one mailbox the poller reads.
- VERP applies when ``verp_enabled`` is on and a bounce address is
  configured; a bounce address VERP cannot extend (a local part too long
  for the item and MAC, or not ASCII) is an error naming the setting, not a
  silent fallback.

Pure: no Flask, no database.
"""

from __future__ import annotations

from bounce.verp import VerpCodec, codec_for


class ReturnPathError(ValueError):
    """The bounce address cannot carry VERP; the text says what to change."""


def bounce_parts(bounce_address: str) -> tuple[str, str]:
    """``(local part, domain)`` of the bounce address ("" and "" when unset)."""
    local, _, domain = bounce_address.strip().rpartition("@")
    return local, domain.lower()


def verp_domain(bounce_address: str, bounce_domain: str) -> str:
    return (bounce_domain.strip() or bounce_parts(bounce_address)[1]).lower()


def verp_codec(
    bounce_address: str, bounce_domain: str, secret_key: str, *, enabled: bool
) -> VerpCodec | None:
    """The codec of the campaign messages' return paths, or None when VERP
    is off or there is no bounce address. Raises ``ReturnPathError``."""
    local, _ = bounce_parts(bounce_address)
    domain = verp_domain(bounce_address, bounce_domain)
    if not enabled or not local or not domain:
        return None
    try:
        return codec_for(local, domain, secret_key)
    except ValueError as error:
        raise ReturnPathError(
            f"VERP cannot use the bounce address {bounce_address!r}: {error};"
            " change SLUICE_BOUNCE_ADDRESS or switch verp_enabled off"
        ) from None


def mailto_codec(bounce_address: str, secret_key: str) -> VerpCodec | None:
    """A codec at the bounce address's own domain, to recognise the
    ``+unsubscribe-<token>`` mailto addresses (``public_links``)."""
    local, domain = bounce_parts(bounce_address)
    if not local or not domain:
        return None
    try:
        return codec_for(local, domain, secret_key)
    except ValueError:
        return None
