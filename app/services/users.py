"""Users: the first administrator, log-in checks, and what an administrator
does to accounts (create, change role, deactivate, reset password).

Rules:

- **Passwords are stored only as hashes** (werkzeug's
  ``generate_password_hash``, its default scrypt) and are at least
  ``MIN_PASSWORD_LENGTH`` characters. A password Sluice generates (first
  administrator, a new user, a reset) is returned once for the caller to
  show and is never stored in clear.
- **Addresses are unique case-insensitively** (``email_lower``, the same
  normalisation as contacts).
- **There is always an active administrator**: the last one can be neither
  demoted nor deactivated, and nobody deactivates their own account (they
  would lock themselves out mid-session). The check locks the active
  administrators' rows (PostgreSQL) so two administrators demoting each
  other at once cannot both succeed.
- **A deactivated user cannot log in**, and their open sessions end at their
  next request (the web layer reloads the user on every request).
- **Log-in answers the same** for an unknown address, an inactive account
  and a wrong password, and takes about as long (a hash is checked in
  every case), so it does not tell which addresses have accounts.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.clock import Clock
from app.models import Role, User
from app.services.addresses import InvalidAddress, normalise_address
from app.services.time_zones import TimeZoneError, parse_time_zone

DEFAULT_ADMIN_EMAIL = "admin@example.com"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
# Checked when no user matches, so a miss costs as much as a hit.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(15))


class UserError(ValueError):
    """A refused change to a user; ``field`` names the form field at fault
    (empty when it is about the action itself)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FirstAdmin:
    email: str
    generated_password: str | None  # shown once, never stored in clear


@dataclass(frozen=True)
class NewPassword:
    """A user and the password generated for them, to be shown once."""

    user: User
    password: str


def generate_password() -> str:
    """A random password of 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)


def ensure_first_admin(
    session: Session, clock: Clock, email: str = "", password: str = ""
) -> FirstAdmin | None:
    """Create an administrator when no user exists yet; ``None`` otherwise.

    Without ``password`` a random one is generated and returned so the caller
    can print it once.
    """
    if session.scalar(select(User.id).limit(1)) is not None:
        return None
    address, key = normalise_address(email or DEFAULT_ADMIN_EMAIL)
    if password and len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"SLUICE_ADMIN_PASSWORD must be at least {MIN_PASSWORD_LENGTH} characters")
    generated = None if password else generate_password()
    session.add(
        User(
            email=address,
            email_lower=key,
            password_hash=generate_password_hash(password or str(generated)),
            role=Role.ADMIN,
            active=True,
            created_at=clock.now(),
        )
    )
    session.flush()
    return FirstAdmin(address, generated)


def login_key(email: str) -> str:
    """The case-folded key of an address typed into the log-in form; a
    malformed one is folded as typed (it matches no user)."""
    try:
        return normalise_address(email)[1]
    except InvalidAddress:
        return email.strip().lower()


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this address and password, else ``None``."""
    user = session.scalar(select(User).where(User.email_lower == login_key(email)))
    candidate_hash = user.password_hash if user is not None else _DUMMY_HASH
    # Over-long input is refused after a hash check all the same (timing).
    matches = check_password_hash(candidate_hash, password[:MAX_PASSWORD_LENGTH])
    if user is None or not user.active or not matches or len(password) > MAX_PASSWORD_LENGTH:
        return None
    return user


def list_users(session: Session) -> list[User]:
    """Every user, by address."""
    return list(session.scalars(select(User).order_by(User.email_lower)))


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UserError(f"no user with id {user_id}")
    return user


def check_new_password(password: str, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"must be at least {MIN_PASSWORD_LENGTH} characters", field)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"must be at most {MAX_PASSWORD_LENGTH} characters", field)


def create_user(session: Session, clock: Clock, email: str, role: Role) -> NewPassword:
    """Create an active user with a generated password (returned once).
    Raises ``UserError`` for a malformed or taken address. Flushes."""
    try:
        address, key = normalise_address(email)
    except InvalidAddress as error:
        raise UserError(str(error), "email") from None
    if session.scalar(select(User.id).where(User.email_lower == key)) is not None:
        raise UserError("a user with this address already exists", "email")
    password = generate_password()
    user = User(
        email=address,
        email_lower=key,
        password_hash=generate_password_hash(password),
        role=role,
        active=True,
        created_at=clock.now(),
    )
    session.add(user)
    session.flush()
    return NewPassword(user, password)


def _other_active_admins(session: Session, user: User) -> int:
    """Active administrators other than ``user``, their rows locked."""
    ids = session.scalars(
        select(User.id)
        .where(User.role == Role.ADMIN, User.active.is_(True), User.id != user.id)
        .with_for_update()
    ).all()
    return len(ids)


def _keep_an_admin(session: Session, user: User, action: str) -> None:
    if user.role == Role.ADMIN and user.active and _other_active_admins(session, user) == 0:
        raise UserError(f"{user.email} is the last active administrator and cannot be {action}")


def change_role(session: Session, user_id: int, role: Role) -> User:
    """Give the user ``role``; the last active administrator keeps theirs. Flushes."""
    user = get_user(session, user_id)
    if role != user.role:
        if role != Role.ADMIN:
            _keep_an_admin(session, user, "made a marketer")
        user.role = role
        session.flush()
    return user


def set_active(session: Session, acting_user_id: int, user_id: int, active: bool) -> User:
    """Activate or deactivate a user. Nobody deactivates themselves; the last
    active administrator stays active. Flushes."""
    user = get_user(session, user_id)
    if not active:
        if user.id == acting_user_id:
            raise UserError("you cannot deactivate your own account")
        _keep_an_admin(session, user, "deactivated")
    user.active = active
    session.flush()
    return user


def reset_password(session: Session, user_id: int) -> NewPassword:
    """Give the user a new generated password (returned once); their
    sessions end at their next request. Flushes."""
    user = get_user(session, user_id)
    password = generate_password()
    user.password_hash = generate_password_hash(password)
    session.flush()
    return NewPassword(user, password)


def change_own_password(session: Session, user_id: int, current: str, new: str) -> User:
    """A user changes their own password, proving the current one. Flushes."""
    user = get_user(session, user_id)
    if not check_password_hash(user.password_hash, current[:MAX_PASSWORD_LENGTH]):
        raise UserError("is not your current password", "current_password")
    check_new_password(new, "new_password")
    user.password_hash = generate_password_hash(new)
    session.flush()
    return user


def set_time_zone(session: Session, user_id: int, name: str) -> User:
    """A user chooses the zone their times are shown and read in: an IANA
    name, or empty for the site's default. Raises ``UserError`` (field
    ``time_zone``) for anything else. Flushes."""
    user = get_user(session, user_id)
    if name:
        try:
            parse_time_zone(name)
        except TimeZoneError as error:
            raise UserError(str(error), "time_zone") from None
    user.time_zone = name or None
    session.flush()
    return user
