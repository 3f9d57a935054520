"""The send queue: one queue item per recipient of a mass email, and the
tracked links its messages point to.

A queue item's ``status`` is changed only by ``app.services.queue_status``.
The first-time columns (``opened_at``, ``clicked_at``, ``unsubscribed_at``)
count a recipient once for rates; ``open_count`` and ``click_count`` keep the
raw numbers.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.campaigns import TRACKING_URL_NAME_MAX_LENGTH
from app.models.contacts import EMAIL_MAX_LENGTH, str_enum


class QueueItemStatus(enum.StrEnum):
    """Recipient status (SPEC §6)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    OPENED = "opened"
    CLICKED = "clicked"
    BOUNCED = "bounced"
    UNSUBSCRIBED = "unsubscribed"
    SPAM_REPORT = "spam_report"
    DROPPED = "dropped"
    ERROR = "error"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class QueueItem(Base):
    """One message of a mass email to one address.

    Queue item id 0 is never stored: links in a Send Test message carry item
    0, and the public endpoints record nothing for it.
    """

    __tablename__ = "queue_items"
    __table_args__ = (
        Index("ix_queue_items_mass_email_id_status", "mass_email_id", "status"),
        Index("ix_queue_items_contact_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No ON DELETE CASCADE: a mass email is only ever soft-deleted, and its
    # queue items are the record of what was sent.
    mass_email_id: Mapped[int] = mapped_column(ForeignKey("mass_emails.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    # The address the message is (or was) sent to, kept as sent.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    status: Mapped[QueueItemStatus] = mapped_column(
        str_enum(QueueItemStatus), default=QueueItemStatus.QUEUED
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    open_count: Mapped[int] = mapped_column(Integer, default=0)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    click_count: Mapped[int] = mapped_column(Integer, default=0)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TrackedLink(Base):
    """A link of a mass email's content. A click token names only the link
    id; the redirect goes to ``url`` stored here, never to a URL taken from
    the request.

    ``name`` is set for a campaign tracking URL (``tracking_url('name')``),
    None for a link of the template's HTML; named links follow the
    template's (link ids ``len(compiled.links) + i``, see
    ``app.services.snapshots``)."""

    __tablename__ = "tracked_links"
    __table_args__ = (
        Index("ix_tracked_links_mass_email_id_name", "mass_email_id", "name", unique=True),
    )

    mass_email_id: Mapped[int] = mapped_column(
        ForeignKey("mass_emails.id", ondelete="CASCADE"), primary_key=True
    )
    link_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    url: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(TRACKING_URL_NAME_MAX_LENGTH))
