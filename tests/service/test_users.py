"""The first administrator: created once, its password shown once and stored
only as a hash."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from app.clock import FixedClock
from app.models import Role, User
from app.services.users import DEFAULT_ADMIN_EMAIL, MIN_PASSWORD_LENGTH, ensure_first_admin
from config import load_settings


def only_user(session: Session) -> User:
    users = session.scalars(select(User)).all()
    assert len(users) == 1
    return users[0]


def test_first_admin_gets_a_generated_password_stored_as_a_hash(
    session: Session, clock: FixedClock
) -> None:
    admin = ensure_first_admin(session, clock)
    session.commit()
    assert admin is not None
    assert admin.email == DEFAULT_ADMIN_EMAIL
    password = admin.generated_password
    assert password is not None
    assert len(password) >= MIN_PASSWORD_LENGTH
    user = only_user(session)
    assert user.role == Role.ADMIN
    assert user.active
    assert user.created_at == clock.now()
    assert password not in user.password_hash
    assert check_password_hash(user.password_hash, password)
    assert not check_password_hash(user.password_hash, password + "x")


def test_second_call_creates_nothing(session: Session, clock: FixedClock) -> None:
    first = ensure_first_admin(session, clock)
    session.commit()
    assert first is not None
    assert ensure_first_admin(session, clock) is None
    assert ensure_first_admin(session, clock, "other@example.com", "another-long-password") is None
    assert only_user(session).email == DEFAULT_ADMIN_EMAIL


def test_configured_email_and_password_are_honoured(session: Session, clock: FixedClock) -> None:
    settings = load_settings(
        environ={
            "SLUICE_ADMIN_EMAIL": " Boss@Example.ORG ",
            "SLUICE_ADMIN_PASSWORD": "correct horse battery",
        }
    )
    admin = ensure_first_admin(session, clock, settings.admin_email, settings.admin_password)
    session.commit()
    assert admin is not None
    assert admin.email == "Boss@example.org"
    assert admin.generated_password is None  # nothing to show: the admin chose it
    user = only_user(session)
    assert user.email_lower == "boss@example.org"
    assert check_password_hash(user.password_hash, "correct horse battery")


def test_short_password_is_refused_and_nothing_created(session: Session, clock: FixedClock) -> None:
    with pytest.raises(ValueError, match="SLUICE_ADMIN_PASSWORD"):
        ensure_first_admin(session, clock, "boss@example.org", "x" * (MIN_PASSWORD_LENGTH - 1))
    session.rollback()
    assert session.scalar(select(func.count()).select_from(User)) == 0
