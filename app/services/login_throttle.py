"""Log-in rate limiting: too many wrong passwords in a short time, and the
next attempt is refused before any password is checked.

Rules:

- **Per account**: after ``PER_ACCOUNT`` failed attempts for one address
  within ``WINDOW``, further attempts for it are refused until the oldest of
  those failures leaves the window. A successful log-in of that account
  starts its count again (a person who mistyped twice and got in is not
  closer to a lock-out afterwards).
- **Per IP**: after ``PER_IP`` failed attempts from one client address
  within ``WINDOW`` (any accounts, existing or not), further attempts from
  it are refused the same way; successes do not reset it (an attacker who
  owns one account must not be able to clear their own counter).
- **Refused attempts are not recorded**: a lock-out does not lengthen
  itself while someone keeps trying, so the account is free again at the
  time the message says.
- Attempts for unknown addresses count like any other, so the limit does
  not tell which addresses have accounts.
- Rows are kept in the database (every web process and thread shares the
  limit) and rows older than ``KEEP`` are deleted as new attempts come in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import LoginAttempt

WINDOW = timedelta(minutes=15)
PER_ACCOUNT = 5
PER_IP = 20
KEEP = timedelta(days=1)
MAX_KEY_LENGTH = 320


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused, and when trying again may work."""

    message: str
    retry_at: datetime


def _failures(session: Session, where: ColumnElement[bool], since: datetime) -> list[datetime]:
    """The times of failed attempts matching ``where`` after ``since``, oldest first."""
    return list(
        session.scalars(
            select(LoginAttempt.attempted_at)
            .where(where, LoginAttempt.attempted_at > since, LoginAttempt.succeeded.is_(False))
            .order_by(LoginAttempt.attempted_at)
        )
    )


def _last_success(session: Session, email_key: str) -> datetime | None:
    return session.scalar(
        select(func.max(LoginAttempt.attempted_at)).where(
            LoginAttempt.email_lower == email_key, LoginAttempt.succeeded.is_(True)
        )
    )


def _retry_at(failures: list[datetime], limit: int) -> datetime:
    # The window holds ``len(failures)`` >= limit; one slot frees when the
    # (len - limit + 1)-th oldest leaves it.
    return failures[len(failures) - limit] + WINDOW


def _minutes_until(when: datetime, now: datetime) -> int:
    return max(1, math.ceil((when - now).total_seconds() / 60))


def refusal(session: Session, clock: Clock, email_key: str, ip: str) -> Refusal | None:
    """A ``Refusal`` when this attempt must not be tried (see the module's
    rules), ``None`` when the password may be checked."""
    now = clock.now()
    since = now - WINDOW
    last_success = _last_success(session, email_key[:MAX_KEY_LENGTH])
    account_since = max(since, last_success) if last_success else since
    account = _failures(
        session, LoginAttempt.email_lower == email_key[:MAX_KEY_LENGTH], account_since
    )
    if len(account) >= PER_ACCOUNT:
        retry_at = _retry_at(account, PER_ACCOUNT)
        return Refusal(
            f"Too many failed log-in attempts for this account. "
            f"Try again in {_minutes_until(retry_at, now)} minute(s).",
            retry_at,
        )
    return ip_refusal(session, clock, ip)


def ip_refusal(session: Session, clock: Clock, ip: str) -> Refusal | None:
    """A ``Refusal`` when ``ip`` has failed too often (the per-IP rule
    alone). The set-password page uses it too: a link that matches nothing
    counts as a failure of its IP, as a wrong password does."""
    now = clock.now()
    from_ip = _failures(session, LoginAttempt.ip == ip, now - WINDOW)
    if len(from_ip) >= PER_IP:
        retry_at = _retry_at(from_ip, PER_IP)
        return Refusal(
            f"Too many failed attempts from your network address. "
            f"Try again in {_minutes_until(retry_at, now)} minute(s).",
            retry_at,
        )
    return None


def record_attempt(
    session: Session, clock: Clock, email_key: str, ip: str, *, succeeded: bool
) -> None:
    """Record an attempt whose password was checked, and delete rows older
    than ``KEEP``. Flushes."""
    now = clock.now()
    session.execute(delete(LoginAttempt).where(LoginAttempt.attempted_at < now - KEEP))
    session.add(
        LoginAttempt(
            email_lower=email_key[:MAX_KEY_LENGTH],
            ip=ip[:45],
            attempted_at=now,
            succeeded=succeeded,
        )
    )
    session.flush()
