"""Users: the first administrator (created once, its password shown once and
stored only as a hash), log-in checks, and accounts an administrator manages."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from app.clock import FixedClock
from app.models import Role, User
from app.services.users import (
    DEFAULT_ADMIN_EMAIL,
    MIN_PASSWORD_LENGTH,
    UserError,
    authenticate,
    change_own_password,
    change_role,
    create_user,
    ensure_first_admin,
    reset_password,
    set_active,
)
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


# ------------------------------------------------- accounts an administrator manages


def admin_and_marketer(session: Session, clock: FixedClock) -> tuple[User, User]:
    admin = create_user(session, clock, "Boss@Example.org", Role.ADMIN).user
    marketer = create_user(session, clock, "mark@example.org", Role.MARKETER).user
    session.commit()
    return admin, marketer


def test_a_created_user_logs_in_with_the_password_shown_once(
    session: Session, clock: FixedClock
) -> None:
    created = create_user(session, clock, " Mark@Example.ORG ", Role.MARKETER)
    session.commit()

    assert created.user.email == "Mark@example.org"
    assert len(created.password) >= MIN_PASSWORD_LENGTH
    assert created.password not in created.user.password_hash
    assert authenticate(session, "mark@EXAMPLE.org", created.password) == created.user
    assert authenticate(session, "mark@example.org", created.password + "x") is None
    assert authenticate(session, "nobody@example.org", created.password) is None


@pytest.mark.parametrize(
    ("email", "message"),
    [("not an address", "must have an @-sign"), ("MARK@example.org", "already exists")],
)
def test_a_bad_or_taken_address_is_refused_naming_the_field(
    session: Session, clock: FixedClock, email: str, message: str
) -> None:
    create_user(session, clock, "mark@example.org", Role.MARKETER)
    session.commit()

    with pytest.raises(UserError, match=message) as refused:
        create_user(session, clock, email, Role.ADMIN)
    assert refused.value.field == "email"


def test_the_last_active_admin_is_neither_demoted_nor_deactivated(
    session: Session, clock: FixedClock
) -> None:
    admin, marketer = admin_and_marketer(session, clock)

    with pytest.raises(UserError, match="last active administrator"):
        change_role(session, admin.id, Role.MARKETER)
    with pytest.raises(UserError, match="last active administrator"):
        set_active(session, marketer.id, admin.id, False)
    with pytest.raises(UserError, match="your own account"):
        set_active(session, admin.id, admin.id, False)
    session.rollback()

    change_role(session, marketer.id, Role.ADMIN)
    set_active(session, marketer.id, admin.id, False)
    session.commit()
    assert not admin.active and marketer.role == Role.ADMIN


def test_an_inactive_user_cannot_log_in(session: Session, clock: FixedClock) -> None:
    created = create_user(session, clock, "mark@example.org", Role.MARKETER)
    admin = create_user(session, clock, "boss@example.org", Role.ADMIN).user
    set_active(session, admin.id, created.user.id, False)
    session.commit()

    assert authenticate(session, "mark@example.org", created.password) is None


def test_a_reset_password_replaces_the_old_one(session: Session, clock: FixedClock) -> None:
    created = create_user(session, clock, "mark@example.org", Role.MARKETER)
    session.commit()

    reset = reset_password(session, created.user.id)
    session.commit()

    assert reset.password != created.password
    assert authenticate(session, "mark@example.org", created.password) is None
    assert authenticate(session, "mark@example.org", reset.password) == created.user


def test_changing_ones_own_password_needs_the_current_one(
    session: Session, clock: FixedClock
) -> None:
    created = create_user(session, clock, "mark@example.org", Role.MARKETER)
    user_id = created.user.id

    with pytest.raises(UserError, match="not your current password") as wrong:
        change_own_password(session, user_id, "guess", "a new long password")
    assert wrong.value.field == "current_password"
    with pytest.raises(UserError, match="at least") as short:
        change_own_password(session, user_id, created.password, "short")
    assert short.value.field == "new_password"

    change_own_password(session, user_id, created.password, "a new long password")
    assert authenticate(session, "mark@example.org", "a new long password") is not None
