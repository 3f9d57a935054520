"""The campaign log: every delivery and engagement event.

One table serves as both the campaign log (by mass email) and a contact's
activity log (by contact).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.contacts import str_enum


class CampaignLogEvent(enum.StrEnum):
    SENT = "sent"
    OPENED = "opened"
    CLICKED = "clicked"
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"
    BOUNCED_HARD = "bounced_hard"
    BOUNCED_SOFT = "bounced_soft"
    COMPLAINT = "complaint"
    DROPPED = "dropped"
    FAILED = "failed"
    ERROR = "error"
    # A person resent a queue item after correcting its address.
    RESENT = "resent"
    # An out-of-office or other automatic reply (RFC 3834): not a bounce.
    AUTOREPLY = "autoreply"


class CampaignLogEntry(Base):
    """One event. ``mass_email_id`` and ``queue_item_id`` are empty for
    events outside a send (an opt-out by an administrator); ``detail`` holds
    what the event needs to be understood later: link id and URL for a
    click, the source of an opt-out, a truncated user agent."""

    __tablename__ = "campaign_log"
    __table_args__ = (
        Index("ix_campaign_log_mass_email_id_event", "mass_email_id", "event"),
        Index("ix_campaign_log_contact_id_occurred_at", "contact_id", "occurred_at"),
        # A recipient's events on the results page (migration 0015).
        Index("ix_campaign_log_queue_item_id", "queue_item_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No ON DELETE: mass emails and queue items are never hard-deleted once
    # they have events.
    mass_email_id: Mapped[int | None] = mapped_column(ForeignKey("mass_emails.id"))
    queue_item_id: Mapped[int | None] = mapped_column(ForeignKey("queue_items.id"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    event: Mapped[CampaignLogEvent] = mapped_column(str_enum(CampaignLogEvent))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
