"""The suppression list, its removal history, and what the bounce pipeline
has seen and applied (SPEC §5).

- ``Suppression``: an address that must not be mass-mailed, one row per
  address (``address_lower`` unique), with the reason, a source a person
  can read ("bounce of mass email 12", "smtp reply at send time", a user's
  name) and the time. Removing one moves it to ``SuppressionRemoval`` with
  who, why and when; the address can be suppressed again later (a new row).
- ``BounceMessage``: every returned message the poller handed over, once:
  unique on (Message-ID, SHA-256 of the bytes), an absent Message-ID stored
  as "" so the hash alone decides (a NULL would never collide).
- ``BounceEvent``: a bounce, complaint or auto-reply applied to a queue
  item, once per (item, kind, address): the database itself refuses a
  second, so a report applied twice (the same bounce fetched again, a
  webhook retried) counts once. Soft bounces within the window are counted
  here by address.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.contacts import EMAIL_MAX_LENGTH, str_enum
from bounce.report import ReportKind

SUPPRESSION_SOURCE_MAX_LENGTH = 500
# RFC 5322 §2.1.1: a header line is at most 998 characters.
MESSAGE_ID_MAX_LENGTH = 998
DOMAIN_MAX_LENGTH = 255
USER_NAME_MAX_LENGTH = 200


class SuppressionReason(enum.StrEnum):
    """Why an address is suppressed (SPEC §5). An opt-out is not one: it is
    the contact's own choice, kept on the contact and undone by the contact."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    SOFT_THRESHOLD = "soft_threshold"
    MANUAL = "manual"


class MessageOutcome(enum.StrEnum):
    """What became of one returned message (``app.services.bounces``)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    NOT_A_BOUNCE = "not_a_bounce"
    UNMATCHED = "unmatched"
    FORGED = "forged"
    UNSUBSCRIBED = "unsubscribed"
    UNRECOGNISED = "unrecognised"


class Suppression(Base):
    __tablename__ = "suppressions"
    __table_args__ = (
        Index("uq_suppressions_address_lower", "address_lower", unique=True),
        # "Everything at example.com" without a scan.
        Index("ix_suppressions_domain", "domain"),
        Index("ix_suppressions_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    address_lower: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    domain: Mapped[str] = mapped_column(String(DOMAIN_MAX_LENGTH))
    reason: Mapped[SuppressionReason] = mapped_column(str_enum(SuppressionReason))
    source: Mapped[str] = mapped_column(String(SUPPRESSION_SOURCE_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SuppressionRemoval(Base):
    """A suppression that was lifted: what it was, and who lifted it, why
    and when."""

    __tablename__ = "suppression_removals"
    __table_args__ = (Index("ix_suppression_removals_address_lower", "address_lower"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    address_lower: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    reason: Mapped[SuppressionReason] = mapped_column(str_enum(SuppressionReason))
    source: Mapped[str] = mapped_column(String(SUPPRESSION_SOURCE_MAX_LENGTH))
    suppressed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_by: Mapped[str] = mapped_column(String(USER_NAME_MAX_LENGTH))
    why: Mapped[str] = mapped_column(Text)


class BounceMessage(Base):
    __tablename__ = "bounce_messages"
    __table_args__ = (
        UniqueConstraint("message_id", "content_hash", name="uq_bounce_messages_message"),
        Index("ix_bounce_messages_outcome_received_at", "outcome", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The returned message's own Message-ID ("" when it has none).
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_MAX_LENGTH))
    content_hash: Mapped[str] = mapped_column(String(64))  # SHA-256, hex
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[MessageOutcome] = mapped_column(str_enum(MessageOutcome))
    kind: Mapped[ReportKind | None] = mapped_column(str_enum(ReportKind))
    queue_item_id: Mapped[int | None] = mapped_column(ForeignKey("queue_items.id"))
    detail: Mapped[str] = mapped_column(Text, default="")


class BounceEvent(Base):
    __tablename__ = "bounce_events"
    __table_args__ = (
        UniqueConstraint(
            "queue_item_id", "kind", "address_lower", name="uq_bounce_events_item_kind_address"
        ),
        # The soft-bounce threshold: an address's events of a kind since a time.
        Index("ix_bounce_events_address_kind_occurred", "address_lower", "kind", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_item_id: Mapped[int] = mapped_column(ForeignKey("queue_items.id"))
    address_lower: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    kind: Mapped[ReportKind] = mapped_column(str_enum(ReportKind))
    reason: Mapped[str] = mapped_column(String(50), default="")
    status: Mapped[str] = mapped_column(String(20), default="")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(SUPPRESSION_SOURCE_MAX_LENGTH), default="")
