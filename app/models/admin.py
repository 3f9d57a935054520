"""Users and the runtime settings an administrator changes."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.contacts import str_enum


class Role(enum.StrEnum):
    ADMIN = "admin"
    MARKETER = "marketer"


class User(Base):
    __tablename__ = "users"
    __table_args__ = (Index("uq_users_email_lower", "email_lower", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_lower: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(str_enum(Role), default=Role.MARKETER)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # An IANA name (app.services.time_zones); None: the site's default
    # (the boot setting default_time_zone), followed when it changes.
    time_zone: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)


class PasswordLinkKind(enum.StrEnum):
    INVITATION = "invitation"
    RESET = "reset"


class PasswordLink(Base):
    """A single-use, expiring link to set a password, mailed to the user
    (``app.services.password_links``, its only writer). Only the SHA-256 of
    the link's token is stored: a copy of the database opens no account."""

    __tablename__ = "password_links"
    __table_args__ = (
        Index("uq_password_links_token_hash", "token_hash", unique=True),
        Index("ix_password_links_user_id", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[PasswordLinkKind] = mapped_column(str_enum(PasswordLinkKind))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=None)
    # Set when a newer link for the same user replaces this one.
    replaced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, default=None)


class RuntimeSetting(Base):
    """One administrator setting; ``value`` is JSON, validated by
    ``app.services.runtime_settings`` (the only writer)."""

    __tablename__ = "runtime_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    """One log-in attempt, kept for the rate limit
    (``app.services.login_throttle``, its only writer). ``email_lower`` is
    the case-folded address typed, whether or not such a user exists."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_email_lower_attempted_at", "email_lower", "attempted_at"),
        Index("ix_login_attempts_ip_attempted_at", "ip", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email_lower: Mapped[str] = mapped_column(String(320))
    # An IPv6 address in text is at most 45 characters.
    ip: Mapped[str] = mapped_column(String(45))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    succeeded: Mapped[bool] = mapped_column(Boolean)
