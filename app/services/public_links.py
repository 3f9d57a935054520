"""Absolute URLs for the links in a message, and the ``List-Unsubscribe``
mailto address.

Paths (served by ``app/web/public.py``): ``/t/c/<token>`` click,
``/t/o/<token>.gif`` open pixel, ``/u/<token>`` opt-out, ``/v/<token>`` view
online. Pure: no Flask, no database.
"""

from __future__ import annotations

from urllib.parse import quote

from app.services.tokens import LinkSigner

# RFC 6068 §2: characters a mailto address may carry unencoded (unreserved
# plus some-delims; "@" is added between local part and domain by us).
_MAILTO_SAFE = "-._~!$'()*+,;:"


class PublicLinks:
    """Builds the public URLs of one site (a trailing slash on ``site_url``
    is ignored)."""

    def __init__(self, site_url: str, signer: LinkSigner, bounce_address: str) -> None:
        self._base = site_url.rstrip("/")
        self._signer = signer
        local, _, domain = bounce_address.strip().rpartition("@")
        self._mailto_local = local
        self._mailto_domain = domain

    def click_url(self, queue_item_id: int, link_id: int) -> str:
        return f"{self._base}/t/c/{self._signer.click_token(queue_item_id, link_id)}"

    def open_pixel_url(self, queue_item_id: int) -> str:
        return f"{self._base}/t/o/{self._signer.item_token('open', queue_item_id)}.gif"

    def opt_out_url(self, queue_item_id: int) -> str:
        return f"{self._base}/u/{self._signer.item_token('opt_out', queue_item_id)}"

    def view_online_url(self, queue_item_id: int) -> str:
        return f"{self._base}/v/{self._signer.item_token('view', queue_item_id)}"

    def unsubscribe_mailto(self, queue_item_id: int) -> str:
        """``mailto:<local>+unsubscribe-<token>@<domain>?subject=unsubscribe``
        at the bounce address, or "" when no bounce address is configured.

        The token is the case-insensitive mailto token: the address goes
        through other mail systems, which may change its case.
        """
        if not self._mailto_local or not self._mailto_domain:
            return ""
        token = self._signer.mailto_token(queue_item_id)
        local = quote(f"{self._mailto_local}+unsubscribe-{token}", safe=_MAILTO_SAFE)
        return f"mailto:{local}@{self._mailto_domain}?subject=unsubscribe"
