"""Sender profiles, templates, campaigns and mass emails.

The foundation holds only what a draft needs; rendering (templates) and the
dispatcher (mass-email state machine, queue) extend these models.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime
from app.models.contacts import TargetList, str_enum

SUBJECT_MAX_LENGTH = 998  # RFC 5322 §2.1.1 line limit
URL_MAX_LENGTH = 2000
TRACKING_URL_NAME_MAX_LENGTH = 100


class CampaignType(enum.StrEnum):
    EMAIL = "email"
    NEWSLETTER = "newsletter"


class MassEmailStatus(enum.StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    PAUSED = "paused"
    CANCELED = "canceled"
    FAILED = "failed"


class SenderProfile(Base):
    """Who a campaign's mail is from; ``reply_to_address`` is the point of
    contact who receives replies."""

    __tablename__ = "sender_profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    from_name: Mapped[str] = mapped_column(String(200), default="")
    from_address: Mapped[str] = mapped_column(String(320))
    reply_to_address: Mapped[str] = mapped_column(String(320), default="")


class EmailTemplate(Base):
    __tablename__ = "email_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX_LENGTH))
    body_html: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str | None] = mapped_column(Text)
    # Layout: a logo image in the header and extra footer text above the
    # company name and postal address (which come from the runtime settings).
    # The server defaults let migration 0003 add these NOT NULL columns to
    # tables holding rows without rebuilding them on SQLite.
    header_logo_url: Mapped[str] = mapped_column(
        String(URL_MAX_LENGTH), default="", server_default=""
    )
    footer_html: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


campaign_target_lists = Table(
    "campaign_target_lists",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("target_list_id", ForeignKey("target_lists.id", ondelete="CASCADE"), primary_key=True),
)

campaign_excluding_lists = Table(
    "campaign_excluding_lists",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column("target_list_id", ForeignKey("target_lists.id", ondelete="CASCADE"), primary_key=True),
)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[CampaignType] = mapped_column(str_enum(CampaignType), default=CampaignType.EMAIL)
    sender_profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("sender_profiles.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Soft delete: the campaign leaves the lists, its mail's links keep working.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    target_lists: Mapped[list[TargetList]] = relationship(secondary=campaign_target_lists)
    excluding_lists: Mapped[list[TargetList]] = relationship(secondary=campaign_excluding_lists)
    mass_emails: Mapped[list[MassEmail]] = relationship(back_populates="campaign")
    # In creation order: the snapshot numbers them in this order.
    tracking_urls: Mapped[list[CampaignTrackingUrl]] = relationship(
        order_by="CampaignTrackingUrl.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class CampaignTrackingUrl(Base):
    """A named URL of a campaign (EspoCRM's "Tracking URLs"): a template
    writes ``{{ tracking_url('name') }}`` (or ``{trackingUrl:name}``) and
    each message gets a tracked link to ``url``. A mass email's snapshot
    copies them into its ``tracked_links`` (with their names), so editing
    them later changes nothing in mail already scheduled or sent."""

    __tablename__ = "campaign_tracking_urls"
    __table_args__ = (UniqueConstraint("campaign_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(TRACKING_URL_NAME_MAX_LENGTH))
    url: Mapped[str] = mapped_column(String(URL_MAX_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MassEmail(Base):
    """One send of a campaign. ``status`` changes only through
    ``app.services.mass_email_status.transition``; a new one is a draft.

    Content: while ``subject`` is None the mass email uses its template's
    content. Once ``subject`` is set, all five content columns (``subject``,
    ``body_html``, ``body_text``, ``header_logo_url``, ``footer_html``) are
    the mass email's own; ``body_text`` None then means "derived from the
    HTML". The same columns hold the snapshot taken when the mass email
    leaves draft, so "view online" re-renders the message as it was sent even
    after the template changes.

    The snapshot also holds the runtime settings a message shows
    (``snapshot_company_name``, ``snapshot_postal_address``,
    ``snapshot_mandatory_opt_out``, ``snapshot_open_tracking``): every
    message of the mass email, and every copy of one shown later, uses them.
    None (a draft, or a snapshot taken before migration 0016) means the
    current runtime settings (``app.services.messages.settings_as_sent``).

    Deleting is a soft delete (``deleted_at``): queue items, tracked links and
    the snapshot stay, so links in mail already sent keep working.
    """

    __tablename__ = "mass_emails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("email_templates.id", ondelete="SET NULL")
    )
    name: Mapped[str] = mapped_column(String(200))
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[MassEmailStatus] = mapped_column(
        str_enum(MassEmailStatus), default=MassEmailStatus.DRAFT
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_MAX_LENGTH))
    body_html: Mapped[str] = mapped_column(Text, default="", server_default="")
    body_text: Mapped[str | None] = mapped_column(Text)
    header_logo_url: Mapped[str] = mapped_column(
        String(URL_MAX_LENGTH), default="", server_default=""
    )
    footer_html: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The runtime settings of the snapshot (see the class's docstring).
    snapshot_company_name: Mapped[str | None] = mapped_column(String(200))
    snapshot_postal_address: Mapped[str | None] = mapped_column(Text)
    snapshot_mandatory_opt_out: Mapped[bool | None] = mapped_column(Boolean)
    snapshot_open_tracking: Mapped[bool | None] = mapped_column(Boolean)
    # "COPY #n": the mass email this one was copied from, and n.
    copy_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("mass_emails.id", ondelete="SET NULL")
    )
    copy_number: Mapped[int | None] = mapped_column(Integer)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the marketer confirmed subject and content meet CAN-SPAM (SPEC §2).
    can_spam_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the audience was resolved into queue items (set once, at start).
    queue_built_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    campaign: Mapped[Campaign] = relationship(back_populates="mass_emails")
    template: Mapped[EmailTemplate | None] = relationship()
