"""Four dispatcher processes on one PostgreSQL database (issue 6): every
message reaches the server once, no 60-minute window holds more than
``max_per_hour``, every item ends sent, bounced or failed.

The runners are real processes (``tests.runner_process``: the product's
``activate_due`` + ``dispatch_tick``) sharing one fake clock
(``tests.process_harness.FileClock``) with the SMTP server of this process.
The test moves the clock, never sleeps to wait for time: under the claim's
own advisory lock (so no claim is being made) and only while nothing is
``sending`` (so no message is in flight), it moves the clock on by a
minute once the runners claimed ``CLAIMS_PER_MINUTE`` at the current
minute, to the moment the quota frees a slot when it is used up, or to the
next retry when nothing is due. So every message is claimed and accepted
at the same fake time, and the server's acceptance times can be checked
window by window against the quota.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import Engine, distinct, func, or_, select
from sqlalchemy.orm import Session

from app import app_settings
from app.extensions import db
from app.models import MassEmailStatus, QueueItem, QueueItemStatus, SendAttempt
from app.services.dispatch import CLAIM_LOCK_KEY
from app.services.quota import QUOTA_WINDOW, quota_frees_at
from tests.conftest import postgresql_only
from tests.process_harness import (
    START,
    Acceptance,
    FileClock,
    RunnerProcess,
    addresses,
    clocked_smtp_server,
    fork_server,
    item_counts,
    mass_email_status,
    seed_campaign,
)

Q = QueueItemStatus
RUNNERS = 4
RECIPIENTS = 5000
MAX_PER_HOUR = 1000
CLAIMS_PER_MINUTE = 200
RUNTIME = {
    "max_per_hour": MAX_PER_HOUR,
    "batch_size": 50,  # four ticks or more per fake minute
    "smtp_connections": 2,
    # Nothing is in flight while the clock moves, so no lease can run out.
    "lease_seconds": 3600,
    "retry_base_seconds": 60,
    "max_attempts": 3,
}
REAL_SECONDS_ALLOWED = 300


def move_clock(engine: Engine, clock: FileClock, mass_email_id: int) -> bool:
    """One look at the database; moves the clock when the runners can do
    nothing more at this moment. Returns whether the mass email is complete."""
    with engine.begin() as connection:
        # Held to the end of this transaction: no claim is under way meanwhile.
        connection.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))
        session = Session(bind=connection)
        status = mass_email_status(session, mass_email_id)
        if status != MassEmailStatus.IN_PROGRESS:
            assert status in {MassEmailStatus.PENDING, MassEmailStatus.COMPLETE}, status
            return status == MassEmailStatus.COMPLETE
        counts = item_counts(session, mass_email_id)
        if counts[Q.SENDING]:
            return False  # messages in flight: their time must not move
        now = clock.now()
        frees_at = quota_frees_at(session, clock, MAX_PER_HOUR)
        queued = (QueueItem.mass_email_id == mass_email_id, QueueItem.status == Q.QUEUED)
        due_now = session.scalar(
            select(func.count()).where(
                *queued, or_(QueueItem.next_attempt_at.is_(None), QueueItem.next_attempt_at <= now)
            )
        )
        next_due = session.scalar(select(func.min(QueueItem.next_attempt_at)).where(*queued))
        claimed_now = session.scalar(
            select(func.count()).select_from(SendAttempt).where(SendAttempt.claimed_at == now)
        )
        if frees_at is not None:
            clock.set(frees_at)
        elif counts[Q.QUEUED] and not due_now and next_due is not None:
            clock.set(next_due)  # only retries are left, none due yet
        elif due_now and (claimed_now or 0) >= CLAIMS_PER_MINUTE:
            clock.advance(timedelta(minutes=1))
        return False


def most_in_any_window(moments: Sequence[datetime]) -> int:
    """The most moments inside one window ``(t - 60 min, t]``; the windows
    that matter end at a moment."""
    ordered = sorted(moments)
    most, start = 0, 0
    for end, moment in enumerate(ordered):
        while ordered[start] <= moment - QUOTA_WINDOW:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_until_complete(
    engine: Engine, clock: FileClock, mass_email_id: int, runners: list[RunnerProcess]
) -> None:
    deadline = time.monotonic() + REAL_SECONDS_ALLOWED
    while not move_clock(engine, clock, mass_email_id):
        for runner in runners:
            runner.check_alive()
        assert time.monotonic() < deadline, f"not complete at {clock.now()}"
        time.sleep(0.02)  # the runners' real work, not fake time


@postgresql_only
def test_four_runner_processes_send_each_message_once_under_one_hourly_quota(
    app: Flask, session: Session, database_url: str, tmp_path: Path
) -> None:
    clock = FileClock(tmp_path / "clock")
    clock.set(START)
    recipients = addresses(RECIPIENTS)
    unknown = set(recipients[100::250])  # 20 hard bounces at RCPT
    busy = set(recipients[137::500])  # 10 deferred at RCPT on every attempt: failed
    mass_email_id = seed_campaign(session, clock, app_settings(app), recipients, RUNTIME)

    with clocked_smtp_server(clock) as server, fork_server() as forks:
        handler = server.handler
        handler.rcpt_replies.update(dict.fromkeys(unknown, "550 5.1.1 User unknown"))
        handler.rcpt_replies.update(dict.fromkeys(busy, "450 4.2.1 Mailbox busy"))
        # The first ten DATA: five deferred once (then sent), five refused (failed).
        handler.data_replies.extend(["451 4.3.0 Try again", "554 5.7.1 Refused"] * 5)
        runners = [
            forks.runner(tmp_path / f"runner-{n}", database_url, server.url, clock.path)
            for n in range(RUNNERS)
        ]
        try:
            for runner in runners:
                runner.wait_ready()
            run_until_complete(db.engine, clock, mass_email_id, runners)
        finally:
            codes = [runner.stop() for runner in runners]
        accepted = list(handler.accepted)

    assert codes == [0] * RUNNERS, [runner.log_text() for runner in runners]
    session.commit()
    counts = item_counts(session, mass_email_id)
    assert counts == Counter({Q.SENT: RECIPIENTS - 35, Q.BOUNCED: 20, Q.FAILED: 15})
    assert_each_sent_item_received_once(session, accepted)
    claimed_at = list(session.scalars(select(SendAttempt.claimed_at)))
    assert most_in_any_window(claimed_at) == MAX_PER_HOUR  # the quota was used to the full
    assert most_in_any_window([a.at for a in accepted]) <= MAX_PER_HOUR
    assert clock.now() - START > timedelta(hours=4)  # 5,000 at 1,000/h
    assert session.scalar(select(func.count(distinct(SendAttempt.runner_id)))) == RUNNERS
    unfinished = (
        select(func.count()).select_from(SendAttempt).where(SendAttempt.finished_at.is_(None))
    )
    assert session.scalar(unfinished) == 0


def assert_each_sent_item_received_once(session: Session, accepted: list[Acceptance]) -> None:
    """The server's copies and the ledger agree: one copy per ``sent`` item,
    for its own address, accepted at the moment its claim and ``sent_at``
    say; one ``accepted`` ledger row per copy."""
    copies = Counter(acceptance.recipient for acceptance in accepted)
    assert copies.most_common(1)[0][1] == 1, copies.most_common(3)
    sent = {
        item_id: (email, sent_at)
        for item_id, email, sent_at in session.execute(
            select(QueueItem.id, QueueItem.email, QueueItem.sent_at).where(
                QueueItem.status == Q.SENT
            )
        )
    }
    assert {(a.queue_item_id, a.recipient, a.at) for a in accepted} == {
        (item_id, email, sent_at) for item_id, (email, sent_at) in sent.items()
    }
    ledger = session.execute(
        select(SendAttempt.queue_item_id, SendAttempt.claimed_at).where(
            SendAttempt.outcome == "accepted"
        )
    ).all()
    assert sorted(ledger) == sorted((a.queue_item_id, a.at) for a in accepted)
