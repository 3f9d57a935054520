"""The hourly quota's ledger arithmetic: a sliding 60-minute window over
``send_attempts``, shared by every mass email and runner. (The quota held
over simulated hours of real sending is in
``tests/integration/test_dispatch.py``.)"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import MassEmail, QueueItem, SendAttempt
from app.services.quota import QUOTA_WINDOW, hourly_quota_left, quota_frees_at


def ledger_row(
    session: Session, item: QueueItem, claimed_at: datetime, runner: str = "runner-a"
) -> None:
    session.add(
        SendAttempt(
            queue_item_id=item.id,
            mass_email_id=item.mass_email_id,
            runner_id=runner,
            claimed_at=claimed_at,
        )
    )
    session.flush()


def test_an_empty_ledger_leaves_the_whole_quota(session: Session, clock: FixedClock) -> None:
    assert hourly_quota_left(session, clock, 100) == 100
    assert quota_frees_at(session, clock, 100) is None


def test_only_claims_of_the_last_60_minutes_count(
    session: Session, clock: FixedClock, item: QueueItem
) -> None:
    now = clock.now()
    for minutes_ago in (61, 60):  # out of the window (t - 60 min, t]
        ledger_row(session, item, now - timedelta(minutes=minutes_ago))
    for minutes_ago in (59, 30, 0):
        ledger_row(session, item, now - timedelta(minutes=minutes_ago))

    assert hourly_quota_left(session, clock, 10) == 7
    clock.advance(timedelta(minutes=1))  # the row of 59 minutes ago leaves
    assert hourly_quota_left(session, clock, 10) == 8
    clock.advance(QUOTA_WINDOW)
    assert hourly_quota_left(session, clock, 10) == 10


def test_the_quota_is_shared_by_mass_emails_and_runners(
    session: Session, clock: FixedClock, item: QueueItem
) -> None:
    first = session.get(MassEmail, item.mass_email_id)
    assert first is not None
    other_mass_email = MassEmail(
        campaign_id=first.campaign_id, name="April", created_at=clock.now()
    )
    session.add(other_mass_email)
    session.flush()
    other_item = QueueItem(
        mass_email_id=other_mass_email.id, email="bob@example.com", created_at=clock.now()
    )
    session.add(other_item)
    session.flush()
    ledger_row(session, item, clock.now(), runner="runner-a")
    ledger_row(session, item, clock.now(), runner="runner-b")
    ledger_row(session, other_item, clock.now(), runner="runner-c")

    assert hourly_quota_left(session, clock, 5) == 2


def test_a_full_window_leaves_nothing_and_says_when_a_slot_opens(
    session: Session, clock: FixedClock, item: QueueItem
) -> None:
    start = clock.now()
    for minutes in (0, 10, 20, 30):
        ledger_row(session, item, start + timedelta(minutes=minutes))
    clock.advance(timedelta(minutes=40))

    assert hourly_quota_left(session, clock, 3) == 0  # never below zero
    # Four rows, room for three: a slot opens when the second oldest leaves.
    assert quota_frees_at(session, clock, 3) == start + timedelta(minutes=10) + QUOTA_WINDOW
    assert quota_frees_at(session, clock, 4) == start + QUOTA_WINDOW
    assert quota_frees_at(session, clock, 5) is None
