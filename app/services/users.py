"""Users and the first administrator."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from app.clock import Clock
from app.models import Role, User
from app.services.addresses import normalise_address

DEFAULT_ADMIN_EMAIL = "admin@example.com"
MIN_PASSWORD_LENGTH = 12


@dataclass(frozen=True)
class FirstAdmin:
    email: str
    generated_password: str | None  # shown once, never stored in clear


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
    generated = None if password else secrets.token_urlsafe(15)
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
