"""Log-in rate limiting: per account and per IP over a sliding window."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import LoginAttempt
from app.services.login_throttle import (
    KEEP,
    PER_ACCOUNT,
    PER_IP,
    WINDOW,
    record_attempt,
    refusal,
)

IP = "192.0.2.10"


def fail(session: Session, clock: FixedClock, key: str, ip: str = IP, times: int = 1) -> None:
    for _ in range(times):
        record_attempt(session, clock, key, ip, succeeded=False)


def test_the_attempt_after_the_limit_is_refused_until_the_window_passes(
    session: Session, clock: FixedClock
) -> None:
    fail(session, clock, "ann@example.com", times=PER_ACCOUNT - 1)
    assert refusal(session, clock, "ann@example.com", IP) is None
    clock.advance(timedelta(minutes=1))
    fail(session, clock, "ann@example.com")

    refused = refusal(session, clock, "ann@example.com", IP)

    assert refused is not None
    assert "Too many failed log-in attempts for this account" in refused.message
    assert "Try again in 14 minute(s)" in refused.message
    assert refused.retry_at == clock.now() - timedelta(minutes=1) + WINDOW
    # Other accounts from other addresses are not affected.
    assert refusal(session, clock, "bob@example.com", "192.0.2.99") is None
    clock.advance(WINDOW - timedelta(minutes=1) - timedelta(seconds=1))
    assert refusal(session, clock, "ann@example.com", IP) is not None
    clock.advance(timedelta(seconds=1))
    assert refusal(session, clock, "ann@example.com", IP) is None


def test_a_success_starts_the_account_count_again(session: Session, clock: FixedClock) -> None:
    fail(session, clock, "ann@example.com", times=PER_ACCOUNT - 1)
    record_attempt(session, clock, "ann@example.com", IP, succeeded=True)
    clock.advance(timedelta(seconds=1))
    fail(session, clock, "ann@example.com", times=PER_ACCOUNT - 1)

    assert refusal(session, clock, "ann@example.com", IP) is None
    fail(session, clock, "ann@example.com")
    assert refusal(session, clock, "ann@example.com", IP) is not None


def test_one_address_trying_many_accounts_is_refused(session: Session, clock: FixedClock) -> None:
    for number in range(PER_IP):
        fail(session, clock, f"user{number}@example.com")
    # A success from that address does not clear its count.
    record_attempt(session, clock, "mine@example.com", IP, succeeded=True)

    refused = refusal(session, clock, "someone-new@example.com", IP)

    assert refused is not None
    assert "from your network address" in refused.message
    assert refusal(session, clock, "someone-new@example.com", "198.51.100.1") is None


def test_old_attempts_are_deleted(session: Session, clock: FixedClock) -> None:
    fail(session, clock, "ann@example.com", times=3)
    clock.advance(KEEP + timedelta(seconds=1))
    fail(session, clock, "bob@example.com")

    assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 1
