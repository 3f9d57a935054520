"""What recipients do with a message: opens, clicks, opt-outs, opt-ins.

Rules:

- Every event lands in the campaign log (``CampaignLogEntry``), which is
  also the contact's activity log.
- Counted once per recipient for rates, raw counts kept: the first open,
  click and opt-out time of a queue item is kept (``opened_at``,
  ``clicked_at``, ``unsubscribed_at``), ``open_count`` and ``click_count``
  count every one.
- A click implies an open: a click on an item never opened also records an
  open (logged with ``implied_by_click``), so "clicked" is never more than
  "opened".
- Statuses change only through ``app.services.queue_status`` and only
  upwards (sent → opened → clicked → unsubscribed); an event that does not
  move the status (an open on a ``bounced`` item, a second click) is still
  counted and logged.
- A click on a campaign tracking URL (``tracking_url('name')``) is a click
  like any other: its tracked link carries the name, which the log detail
  keeps (``name``) beside the link id and URL.
- Soft-deleted mass emails and campaigns make no difference: links in mail
  already sent keep working.
- Queue item id 0 is a Send Test message (``TEST_QUEUE_ITEM_ID``): test mail
  stays outside the statistics, so every function here records nothing and
  changes nothing for it; the public pages still show.
- The item's row is locked (``SELECT … FOR UPDATE`` on PostgreSQL) while an
  event is applied, so two clicks at once count as two and keep one first
  time.

The functions flush; the caller commits. No Flask here.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import (
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    QueueItem,
    QueueItemStatus,
    TrackedLink,
)
from app.services.addresses import InvalidAddress
from app.services.contacts import change_opt_out, find_contact
from app.services.queue_status import transition_if_allowed

TEST_QUEUE_ITEM_ID = 0
USER_AGENT_MAX_LENGTH = 200


class OptOutSource(enum.StrEnum):
    """How a recipient opted out (``Contact.opt_out_source``, log detail)."""

    LINK = "link"  # the confirmation page behind the opt-out link
    ONE_CLICK = "one-click"  # RFC 8058 POST from the mail client
    MAILTO = "mailto"  # a mail to the List-Unsubscribe mailto address
    COMPLAINT = "complaint"  # a spam report (ARF, RFC 5965) about a message


# Opt-outs the recipient made through a message. Opting back in through a
# link undoes only these: an opt-out an administrator or a complaint set is
# not the link holder's to undo (the link may have been forwarded).
RECIPIENT_OPT_OUT_SOURCES = frozenset(
    source.value for source in OptOutSource if source is not OptOutSource.COMPLAINT
)


class OptInResult(enum.StrEnum):
    OPTED_IN = "opted_in"
    NOT_OPTED_OUT = "not_opted_out"  # nothing to undo
    REFUSED = "refused"  # opted out some other way (see RECIPIENT_OPT_OUT_SOURCES)
    UNKNOWN = "unknown"  # test message, unknown item, or no contact any more


def is_test_item(queue_item_id: int) -> bool:
    return queue_item_id == TEST_QUEUE_ITEM_ID


def find_recipient(session: Session, queue_item_id: int) -> QueueItem | None:
    """The queue item behind a link, for display only (no lock); None for a
    test message or an unknown id."""
    if is_test_item(queue_item_id):
        return None
    return session.get(QueueItem, queue_item_id)


def record_open(session: Session, queue_item_id: int, clock: Clock, user_agent: str) -> bool:
    """Record an open (the pixel was loaded). Returns whether it was recorded."""
    item = _locked_item(session, queue_item_id)
    if item is None:
        return False
    _count_open(session, item, clock, {"user_agent": _short(user_agent)})
    session.flush()
    return True


def record_click(
    session: Session, queue_item_id: int, link_id: int, clock: Clock, user_agent: str
) -> str | None:
    """Record a click on link ``link_id`` and return the URL stored for it.

    None (nothing recorded) for a test message, an unknown item, a link id the
    item's mass email does not have, or a stored URL that is not http(s): the
    redirect only ever goes to a stored web address.
    """
    item = _locked_item(session, queue_item_id)
    if item is None:
        return None
    link = session.execute(
        select(TrackedLink.url, TrackedLink.name).where(
            TrackedLink.mass_email_id == item.mass_email_id, TrackedLink.link_id == link_id
        )
    ).one_or_none()
    if link is None:
        return None
    url, name = link
    if not is_redirect_target(url):
        return None
    now = clock.now()
    agent = _short(user_agent)
    if item.opened_at is None:
        _count_open(session, item, clock, {"user_agent": agent, "implied_by_click": True})
    if item.clicked_at is None:
        item.clicked_at = now
    item.click_count += 1
    transition_if_allowed(item, QueueItemStatus.CLICKED, clock)
    _log(
        session,
        item,
        item.contact_id,
        CampaignLogEvent.CLICKED,
        now,
        link_id=link_id,
        url=url,
        name=name,  # a campaign tracking URL's; None (left out) for the template's links
    )
    session.flush()
    return url


def opt_out(session: Session, queue_item_id: int, source: OptOutSource, clock: Clock) -> bool:
    """Opt the recipient out of mass email.

    Sets the contact's opt-out flag, time and source (the contact of the
    queue item, or, if that contact was deleted, the contact now holding the
    address it was sent to), stamps the item's ``unsubscribed_at`` the first
    time and moves it to ``unsubscribed`` where allowed (a ``bounced`` item
    stays ``bounced``). Logs ``opted_out`` with the source when the contact
    or the item changed; repeating it changes and logs nothing. Returns
    whether anything changed.
    """
    item = _locked_item(session, queue_item_id)
    if item is None:
        return False
    now = clock.now()
    contact = _recipient_contact(session, item)
    contact_changed = contact is not None and change_opt_out(
        session, contact, True, source.value, clock
    )
    first_time = item.unsubscribed_at is None
    if first_time:
        item.unsubscribed_at = now
    transition_if_allowed(item, QueueItemStatus.UNSUBSCRIBED, clock)
    if contact_changed or first_time:
        contact_id = contact.id if contact is not None else None
        _log(session, item, contact_id, CampaignLogEvent.OPTED_OUT, now, source=source.value)
    session.flush()
    return contact_changed or first_time


def opt_in(session: Session, queue_item_id: int, clock: Clock) -> OptInResult:
    """Opt the recipient back in (the button on the opt-out done page).

    Undoes only an opt-out the recipient made through a message (see
    ``RECIPIENT_OPT_OUT_SOURCES``). The queue item keeps ``unsubscribed``: it
    records what happened to that message. Logs ``opted_in``.
    """
    item = _locked_item(session, queue_item_id)
    contact = None if item is None else _recipient_contact(session, item)
    if item is None or contact is None:
        return OptInResult.UNKNOWN
    if not contact.opted_out:
        return OptInResult.NOT_OPTED_OUT
    if contact.opt_out_source not in RECIPIENT_OPT_OUT_SOURCES:
        return OptInResult.REFUSED
    change_opt_out(session, contact, False, "", clock)
    _log(session, item, contact.id, CampaignLogEvent.OPTED_IN, clock.now(), source="link")
    session.flush()
    return OptInResult.OPTED_IN


def is_redirect_target(url: str) -> bool:
    """An absolute http(s) URL with a host and no control characters or
    white space (which could split a ``Location`` header)."""
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in url):
        return False
    parts = urlsplit(url)
    return parts.scheme.lower() in {"http", "https"} and bool(parts.netloc)


def mask_address(address: str) -> str:
    """``ann.smith@example.com`` → ``a***@example.com``: enough for the
    recipient to recognise the address, little for anyone the page is
    forwarded to."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def _locked_item(session: Session, queue_item_id: int) -> QueueItem | None:
    if is_test_item(queue_item_id):
        return None
    # FOR UPDATE bypasses the identity map and refreshes the row.
    return session.get(QueueItem, queue_item_id, with_for_update=True)


def _recipient_contact(session: Session, item: QueueItem) -> Contact | None:
    if item.contact_id is not None:
        return session.get(Contact, item.contact_id)
    try:
        return find_contact(session, item.email)
    except InvalidAddress:
        return None


def _count_open(session: Session, item: QueueItem, clock: Clock, detail: dict[str, Any]) -> None:
    now = clock.now()
    if item.opened_at is None:
        item.opened_at = now
    item.open_count += 1
    transition_if_allowed(item, QueueItemStatus.OPENED, clock)
    _log(session, item, item.contact_id, CampaignLogEvent.OPENED, now, **detail)


def _log(
    session: Session,
    item: QueueItem,
    contact_id: int | None,
    event: CampaignLogEvent,
    now: datetime,
    **detail: Any,
) -> None:
    session.add(
        CampaignLogEntry(
            mass_email_id=item.mass_email_id,
            queue_item_id=item.id,
            contact_id=contact_id,
            event=event,
            occurred_at=now,
            detail={key: value for key, value in detail.items() if value not in (None, "")},
        )
    )


def _short(user_agent: str) -> str:
    return user_agent[:USER_AGENT_MAX_LENGTH]
