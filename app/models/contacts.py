"""Contacts, target lists and saved filters."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    literal_column,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime

# Known audience types (EspoCRM's entity types); any other short name is a
# custom type.
AUDIENCE_TYPES = ("contact", "lead", "account", "agent", "client")
AUDIENCE_TYPE_MAX_LENGTH = 40
EMAIL_MAX_LENGTH = 320  # RFC 3696 errata: 64 + 1 + 255


class EmailStatus(enum.StrEnum):
    VALID = "valid"
    INVALID = "invalid"


def str_enum(enum_class: type[enum.StrEnum], length: int = 20) -> Enum:
    """A portable enum column: VARCHAR plus a CHECK constraint on both databases."""
    return Enum(
        enum_class,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Contact(Base):
    """A person Sluice can mass-email.

    ``email`` keeps the address as normalised on entry (local part as typed,
    domain lower-cased and IDNA-normalised); ``email_lower`` is its
    case-folded key. The unique index on ``email_lower`` is what makes
    addresses unique case-insensitively, enforced by the database itself.
    ``opted_out`` is the *mass-email* opt-out only: it never blocks
    transactional mail (Sluice sends none).
    """

    __tablename__ = "contacts"
    __table_args__ = (
        Index("uq_contacts_email_lower", "email_lower", unique=True),
        Index("ix_contacts_created_at", "created_at"),
        # The contacts page's search by the start of a name or company
        # (``app.services.contact_search``; migration 0013). Expression
        # indexes: the search compares lower(column) on both databases.
        Index("ix_contacts_first_name_lower", func.lower(literal_column("first_name"))),
        Index("ix_contacts_last_name_lower", func.lower(literal_column("last_name"))),
        Index("ix_contacts_company_lower", func.lower(literal_column("company"))),
        CheckConstraint(
            "(email IS NULL AND email_lower IS NULL) OR "
            "(email IS NOT NULL AND email_lower IS NOT NULL)",
            name="email_key_present",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    email_lower: Mapped[str | None] = mapped_column(String(EMAIL_MAX_LENGTH))
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    company: Mapped[str] = mapped_column(String(200), default="")
    audience_type: Mapped[str] = mapped_column(
        String(AUDIENCE_TYPE_MAX_LENGTH), default="contact", index=True
    )
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    email_status: Mapped[EmailStatus] = mapped_column(
        str_enum(EmailStatus, 16), default=EmailStatus.VALID
    )
    email_status_reason: Mapped[str] = mapped_column(Text, default="")
    email_status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False)
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opt_out_source: Mapped[str] = mapped_column(String(200), default="")


class TargetList(Base):
    """A named set of contacts; also used as an excluding list by campaigns."""

    __tablename__ = "target_lists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TargetListMember(Base):
    __tablename__ = "target_list_members"
    __table_args__ = (Index("ix_target_list_members_contact_id", "contact_id"),)

    target_list_id: Mapped[int] = mapped_column(
        ForeignKey("target_lists.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SavedFilter(Base):
    """A contact filter kept by name, applied once to populate a target list
    (EspoCRM's populate-from-report). ``criteria`` is a ``ContactFilter`` as JSON."""

    __tablename__ = "saved_filters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    criteria: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
