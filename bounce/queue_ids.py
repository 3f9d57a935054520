"""The queue item a returned message or a relay's event names without a
VERP address: Sluice's own ``X-Sluice-Queue-Item`` header and Message-ID
(``<q<item>.<16 hex>@domain>``, ``app/services/composition.py``). Neither is
signed: callers check the item's address against the bounced recipient.
Item 0 is a test message, never a queue item."""

from __future__ import annotations

import re

_MESSAGE_ID = re.compile(r"<?q([1-9][0-9]{0,18})\.[0-9a-f]{16}@[^>\s]+>?")
_HEADER = re.compile(r"\s*([1-9][0-9]{0,18})\s*")
_MAX_ITEM_ID = 2**63 - 1  # a BIGINT


def item_from_header(value: str | None) -> int | None:
    """The item an ``X-Sluice-Queue-Item`` value names, else None."""
    return _item(_HEADER.fullmatch(value or ""))


def item_from_message_id(value: str | None) -> int | None:
    """The item inside one of Sluice's own Message-IDs, else None."""
    return _item(_MESSAGE_ID.fullmatch((value or "").strip()))


def _item(match: re.Match[str] | None) -> int | None:
    if match is None:
        return None
    item_id = int(match.group(1))
    return item_id if item_id <= _MAX_ITEM_ID else None
