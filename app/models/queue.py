"""The send queue: one queue item per recipient of a mass email, and the
tracked links its messages point to.

A queue item's ``status`` is changed only by ``app.services.queue_status``
(the one exception: the initial status, which ``app.services.queue_build``
inserts set-based when the queue is built).
The first-time columns (``opened_at``, ``clicked_at``, ``unsubscribed_at``)
count a recipient once for rates; ``open_count`` and ``click_count`` keep the
raw numbers.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.campaigns import TRACKING_URL_NAME_MAX_LENGTH
from app.models.contacts import EMAIL_MAX_LENGTH, str_enum
from app.models.pacing import DOMAIN_GROUP_MAX_LENGTH, DomainGroup


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


class BounceKind(enum.StrEnum):
    """A bounce's kind (SPEC §5): hard bounces suppress at once, soft ones
    after a threshold."""

    HARD = "hard"
    SOFT = "soft"


RUNNER_ID_MAX_LENGTH = 100
SEND_OUTCOME_MAX_LENGTH = 30

# The partial indexes' condition, the same text on both databases.
_SENDING = text("status = 'sending'")


def claimable_index(group: DomainGroup) -> Index:
    """The claim's index of one domain group: its queued items per mass
    email in id order (the group's name is one of our own constants).

    One two-column partial index per group rather than one over (mass
    email, group, id): a claim reads each open group's next items, and
    PostgreSQL's planner reliably picks an index whose condition the query
    implies outright and which hands it the order it asks for. With the
    three-column index and statistics not yet taken after a queue build, it
    read and sorted a mass email's whole queue once per group for every
    claim (see docs/decisions.md, "Dispatch throughput"). Each item is in at
    most one of them, so an insert or a status change updates no more index
    entries than with one index."""
    condition = text(f"status = 'queued' AND domain_group = '{group.value}'")
    return Index(
        f"ix_queue_items_claimable_{group.value}",
        "mass_email_id",
        "id",
        postgresql_where=condition,
        sqlite_where=condition,
    )


class QueueItem(Base):
    """One message of a mass email to one address.

    Queue item id 0 is never stored: links in a Send Test message carry item
    0, and the public endpoints record nothing for it.

    Delivery columns (the dispatcher's): ``attempts`` counts SMTP attempts;
    ``next_attempt_at`` is when a queued item may be claimed (None: at once);
    ``last_code``/``last_reply`` keep the server's last answer; a claimed
    item (``sending``) carries ``claimed_by`` (the runner's id) and
    ``lease_expires_at``, after which it counts as interrupted.
    ``skip_reason`` says why an item built as dropped, unsubscribed or error
    is never sent. ``domain_group`` is the recipient's domain group, set when
    the queue is built (``app.services.domain_groups``), for pacing.
    ``resent_at``: when a person resent it after correcting its contact's
    address (at most once; ``email`` then holds the new one).

    ``uq_queue_items_mass_email_contact``: one item per contact and mass
    email, so a queue can never be built twice for the same contact (NULL
    contact ids, left by deleted contacts, may repeat on both databases).
    """

    __tablename__ = "queue_items"
    __table_args__ = (
        UniqueConstraint("mass_email_id", "contact_id", name="uq_queue_items_mass_email_contact"),
        Index("ix_queue_items_mass_email_id_status", "mass_email_id", "status"),
        # The results page's recipients in id order, page by page (a keyset).
        # Migration 0015.
        Index("ix_queue_items_mass_email_id_id", "mass_email_id", "id"),
        Index("ix_queue_items_contact_id", "contact_id"),
        # Housekeeping finds expired leases without scanning the queue.
        Index(
            "ix_queue_items_sending_lease",
            "lease_expires_at",
            postgresql_where=_SENDING,
            sqlite_where=_SENDING,
        ),
        # The claim: each domain group's next queued items of a mass email
        # in id order, without walking past the items already sent or
        # another group's (a capped gmail may hold most of a queue).
        # Migration 0009.
        *(claimable_index(group) for group in DomainGroup),
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
    # Server defaults let migration 0005 add the NOT NULL columns to a table
    # holding rows.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_reply: Mapped[str] = mapped_column(Text, default="", server_default="")
    claimed_by: Mapped[str | None] = mapped_column(String(RUNNER_ID_MAX_LENGTH))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bounce_kind: Mapped[BounceKind | None] = mapped_column(str_enum(BounceKind, length=10))
    skip_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    domain_group: Mapped[DomainGroup] = mapped_column(
        str_enum(DomainGroup, length=DOMAIN_GROUP_MAX_LENGTH),
        default=DomainGroup.OTHER,
        server_default=DomainGroup.OTHER.value,
    )
    # Set when a person resent the item after correcting its address: a
    # resend happens once (``app.services.queue_status``).
    resent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SendAttempt(Base):
    """One claim of a queue item by a runner, and its result: the quota
    ledger and the attempt history.

    The hourly quota is a sliding window: the rows whose ``claimed_at`` falls
    in the last 60 minutes, across all mass emails and runners. A row is
    written when the item is claimed (before the SMTP conversation), so a
    message in doubt still counts; ``finished_at``, ``outcome``, ``code`` and
    ``reply`` are filled in when the result is known. ``domain_group`` is the
    claimed item's, so a group's hourly cap counts its own rows.
    """

    __tablename__ = "send_attempts"
    __table_args__ = (
        Index("ix_send_attempts_claimed_at", "claimed_at"),
        Index("ix_send_attempts_queue_item_id", "queue_item_id"),
        # A capped group's rows of the last 60 minutes, index only.
        Index("ix_send_attempts_domain_group_claimed_at", "domain_group", "claimed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # No cascade: the ledger is the record of what was submitted.
    queue_item_id: Mapped[int] = mapped_column(ForeignKey("queue_items.id"))
    mass_email_id: Mapped[int] = mapped_column(ForeignKey("mass_emails.id"))
    runner_id: Mapped[str] = mapped_column(String(RUNNER_ID_MAX_LENGTH))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(SEND_OUTCOME_MAX_LENGTH))
    code: Mapped[int | None] = mapped_column(Integer)
    reply: Mapped[str] = mapped_column(Text, default="", server_default="")
    domain_group: Mapped[DomainGroup] = mapped_column(
        str_enum(DomainGroup, length=DOMAIN_GROUP_MAX_LENGTH),
        default=DomainGroup.OTHER,
        server_default=DomainGroup.OTHER.value,
    )


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
