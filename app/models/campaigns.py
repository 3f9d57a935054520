"""Sender profiles, templates, campaigns and mass emails.

The foundation holds only what a draft needs; rendering (templates) and the
dispatcher (mass-email state machine, queue) extend these models.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime
from app.models.contacts import TargetList, str_enum


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
    subject: Mapped[str] = mapped_column(String(998))  # RFC 5322 §2.1.1 line limit
    body_html: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str | None] = mapped_column(Text)
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

    target_lists: Mapped[list[TargetList]] = relationship(secondary=campaign_target_lists)
    excluding_lists: Mapped[list[TargetList]] = relationship(secondary=campaign_excluding_lists)
    mass_emails: Mapped[list[MassEmail]] = relationship(back_populates="campaign")


class MassEmail(Base):
    """One send of a campaign. ``status`` changes only through the dispatcher's
    transition function (built with the dispatcher); a new one is a draft."""

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

    campaign: Mapped[Campaign] = relationship(back_populates="mass_emails")
