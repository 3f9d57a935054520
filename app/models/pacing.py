"""Per-domain pacing: recipient domain groups and their throttles.

Which domain belongs to which group is a rule of
``app.services.domain_groups``; a queue item keeps its group from the
moment its queue is built, and each ``send_attempts`` row the group of the
item it claimed, so a group's hourly count is one indexed query. How the
dispatcher uses them: ``app.services.pacing``.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.contacts import str_enum

DOMAIN_GROUP_MAX_LENGTH = 10


class DomainGroup(enum.StrEnum):
    """A recipient's mailbox provider, as far as pacing cares (SPEC §4)."""

    GMAIL = "gmail"
    YAHOO = "yahoo"
    OUTLOOK = "outlook"
    OTHER = "other"

    @property
    def label(self) -> str:
        """The group's name for people (settings, status)."""
        return _LABELS[self]


_LABELS = {
    DomainGroup.GMAIL: "Gmail",
    DomainGroup.YAHOO: "Yahoo/AOL",
    DomainGroup.OUTLOOK: "Outlook/Hotmail",
    DomainGroup.OTHER: "Other domains",
}


class DomainThrottle(Base):
    """A domain group slowed down after a rate-limit reply: no claim takes
    its items before ``throttled_until``. One row per group, kept after the
    throttle ends: ``strikes`` counts throttles in a row, which makes the next
    one longer, and the last reply stays visible to operators."""

    __tablename__ = "domain_throttles"

    domain_group: Mapped[DomainGroup] = mapped_column(
        str_enum(DomainGroup, length=DOMAIN_GROUP_MAX_LENGTH), primary_key=True
    )
    throttled_at: Mapped[datetime] = mapped_column(UTCDateTime)
    throttled_until: Mapped[datetime] = mapped_column(UTCDateTime)
    strikes: Mapped[int] = mapped_column(Integer)
    code: Mapped[int | None] = mapped_column(Integer)
    reply: Mapped[str] = mapped_column(Text, default="")
