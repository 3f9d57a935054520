"""``app.services.bounce_poll`` against a real Dovecot and both databases:
each result is committed with its checkpoint before the message is moved,
failures are recorded, one runner polls a mailbox at a time.

The handler here, ``RecordingHandler``, is a stand-in for the bounce
service's ``process_message`` that keeps these tests about the loop: it
writes one row per message (a job-run row: a table that needs nothing
else) and, like the real one, counts a message seen twice once.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app import app_settings
from app.cli import build_cli
from app.clock import FixedClock
from app.models import BounceMailboxCheckpoint, JobRun, JobRunOutcome
from app.services import bounce_poll
from app.services.bounce_poll import LEASE, PollOptions, PollResult, poll_bounces
from tests.dovecot import DovecotServer, free_port
from tests.integration.test_mailbox import Sleeps, message, number_of, numbers
from tests.tcp_proxy import cutting_proxy

HANDLED = "test-handled-message"


@dataclass(frozen=True)
class Applied:
    keep_for_review: bool


@dataclass
class RecordingHandler:
    """Applies a message by adding a row keyed by its content hash (once);
    "unparseable" in the body → kept for review; "explode" → raises after
    writing; ``database_down_at`` → the database "goes away"."""

    database_down_at: int | None = None
    calls: int = 0

    def __call__(self, session: Session, raw: bytes) -> Applied:
        self.calls += 1
        if number_of(raw) == self.database_down_at:
            raise OperationalError("INSERT …", {}, Exception("server closed the connection"))
        digest = hashlib.sha256(raw).hexdigest()
        seen = session.scalar(select(JobRun.id).filter_by(job_id=HANDLED, result=digest))
        if seen is None:
            session.add(
                JobRun(
                    job_id=HANDLED,
                    runner_id=str(number_of(raw)),
                    started_at=datetime(2026, 1, 1, tzinfo=UTC),
                    outcome=JobRunOutcome.OK,
                    result=digest,
                    error="",
                )
            )
            session.flush()
        if b"explode" in raw:
            raise ValueError("the parser choked")
        return Applied(keep_for_review=b"unparseable" in raw)


def counted(session: Session) -> list[int]:
    """The messages applied, by number, as committed."""
    session.expire_all()
    return sorted(
        int(n) for n in session.scalars(select(JobRun.runner_id).filter_by(job_id=HANDLED))
    )


def checkpoint_row(session: Session) -> BounceMailboxCheckpoint:
    session.expire_all()
    return session.execute(select(BounceMailboxCheckpoint)).scalar_one()


@pytest.fixture
def user(dovecot: DovecotServer) -> str:
    return dovecot.new_user()


@pytest.fixture
def poll(
    app: Flask, session: Session, clock: FixedClock, dovecot: DovecotServer, user: str
) -> Iterator[PollRunner]:
    yield PollRunner(session, clock, dovecot, user)


@dataclass
class PollRunner:
    session: Session
    clock: FixedClock
    dovecot: DovecotServer
    user: str
    folder: str = "INBOX"
    port: int | None = None  # another port than Dovecot's (a proxy)

    def __call__(
        self,
        handler: RecordingHandler | None = None,
        *,
        runner: str = "runner-1",
        **options: object,
    ) -> PollResult:
        url = self.dovecot.url(self.user, self.folder)
        if self.port is not None:
            url = url.replace(f":{self.dovecot.port}/", f":{self.port}/")
        return poll_bounces(
            self.session,
            url,
            handler or RecordingHandler(),
            clock=self.clock,
            runner=runner,
            options=PollOptions(sleeper=Sleeps(), **options),  # type: ignore[arg-type]
        )


def test_each_result_is_committed_with_its_checkpoint_then_moved(
    poll: PollRunner, session: Session, dovecot: DovecotServer, user: str, clock: FixedClock
) -> None:
    dovecot.append(user, [message(1), message(2, body=b"unparseable\r\n"), message(3)])

    result = poll(batch_size=2)

    assert result.error == ""
    assert (result.stats.processed, result.stats.unparsed) == (2, 1)  # type: ignore[union-attr]
    assert counted(session) == [1, 2, 3]
    row = checkpoint_row(session)
    assert row.mailbox == f"imap://{user}@127.0.0.1:{dovecot.port}/INBOX"  # no password
    assert (row.uidvalidity, row.last_uid) == (dovecot.uidvalidity(user), 3)
    assert (row.last_poll_at, row.last_error) == (clock.now(), "")
    assert (row.locked_by, row.locked_until) == (None, None)  # the lease is released
    assert numbers(dovecot.bodies(user, "Processed")) == [1, 3]
    assert numbers(dovecot.bodies(user, "Unparsed")) == [2]
    assert "processed" in result.describe() and "secret" not in result.describe()


def test_a_connection_lost_between_commit_and_move_counts_nothing_twice(
    poll: PollRunner, session: Session, dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(n) for n in range(1, 5)])
    handler = RecordingHandler()

    with cutting_proxy(dovecot.port) as proxy:

        def cut_once_message_2_is_committed(committed: Session) -> None:
            if handler.calls == 2 and proxy.connections == 1:
                proxy.sever()

        poll.port = proxy.port  # the same mailbox (URL) for both polls
        event.listen(session, "after_commit", cut_once_message_2_is_committed)
        try:
            # Batches of 2: message 2's commit ends the first batch, whose
            # move then finds the connection gone; the loss ends this poll.
            first = poll(handler, max_reconnects=0, batch_size=2)
        finally:
            event.remove(session, "after_commit", cut_once_message_2_is_committed)

        assert first.error.startswith("connection lost")
        assert counted(session) == [1, 2]
        assert checkpoint_row(session).last_uid == 2  # committed with message 2's result
        assert numbers(dovecot.bodies(user, "INBOX")) == [1, 2, 3, 4]  # but not moved

        result = poll(handler, batch_size=2)

    assert result.stats is not None and result.stats.again == 2  # handed over again
    assert handler.calls == 6  # 1 and 2, then 1 and 2 again, 3 and 4
    assert counted(session) == [1, 2, 3, 4]  # counted once
    assert dovecot.contents(user, "INBOX") == {}
    assert numbers(dovecot.bodies(user, "Processed")) == [1, 2, 3, 4]


def test_a_failing_message_is_rolled_back_recorded_and_kept_in_unparsed(
    poll: PollRunner, session: Session, dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(1), message(2, body=b"explode\r\n"), message(3)])

    result = poll()

    assert result.error == ""
    assert counted(session) == [1, 3]  # message 2's own writes were rolled back
    row = checkpoint_row(session)
    assert row.last_uid == 3
    assert "message UID 2: ValueError: the parser choked" in row.last_error
    assert numbers(dovecot.bodies(user, "Unparsed")) == [2]
    assert numbers(dovecot.bodies(user, "Processed")) == [1, 3]


def test_an_unavailable_database_stops_the_poll_and_leaves_the_message(
    poll: PollRunner, session: Session, dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(1), message(2), message(3)])

    result = poll(RecordingHandler(database_down_at=2))

    assert result.error.startswith("stopped: the database is unavailable")
    assert counted(session) == [1]
    row = checkpoint_row(session)
    assert (row.last_uid, row.locked_by) == (1, None)
    assert "server closed the connection" in row.last_error
    assert numbers(dovecot.bodies(user, "INBOX")) == [2, 3]

    assert poll().error == ""
    assert counted(session) == [1, 2, 3]
    assert checkpoint_row(session).last_error == ""  # a good poll clears it


def test_one_runner_polls_a_mailbox_at_a_time(
    poll: PollRunner, session: Session, clock: FixedClock, dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(1)])
    key = f"imap://{user}@127.0.0.1:{dovecot.port}/INBOX"
    assert bounce_poll.claim_mailbox(session, key, "runner-2", clock)

    skipped = poll(runner="runner-1")

    assert skipped.stats is None
    assert skipped.skipped == "another runner is polling this mailbox"
    assert counted(session) == []

    clock.advance(LEASE + timedelta(seconds=1))  # runner-2 died holding it
    assert poll(runner="runner-1").stats is not None
    assert counted(session) == [1]


def test_a_changed_uidvalidity_is_stored_and_nothing_counts_twice(
    poll: PollRunner, session: Session, dovecot: DovecotServer, user: str
) -> None:
    poll.folder = "Bounces"
    dovecot.append(user, [message(1), message(2)], folder="Bounces")
    poll()
    first = checkpoint_row(session).uidvalidity
    dovecot.recreate_folder(user, "Bounces")
    dovecot.append(user, [message(1), message(2), message(3)], folder="Bounces")

    result = poll()

    assert result.stats is not None and result.stats.rescanned
    row = checkpoint_row(session)
    assert row.uidvalidity == dovecot.uidvalidity(user, "Bounces") != first
    assert row.last_uid == 3
    assert counted(session) == [1, 2, 3]


def test_a_server_that_cannot_be_reached_is_recorded_as_the_last_error(
    poll: PollRunner, session: Session, dovecot: DovecotServer, user: str
) -> None:
    poll.port = free_port()  # nobody listens there

    result = poll(max_reconnects=1)

    assert result.error.startswith("connection lost 2 time(s) in a row")
    row = checkpoint_row(session)
    assert row.last_error == result.error
    assert row.locked_by is None


def test_test_connection_reports_a_malformed_url_as_its_first_step() -> None:
    report = bounce_poll.test_connection("imaps://imap.example.com/INBOX")
    assert (report.ok, report.failed_step) == (False, "configuration")
    assert "needs a user and a password" in report.error


def test_test_connection_reports_the_folder(dovecot: DovecotServer, user: str) -> None:
    dovecot.append(user, [message(1)])
    report = bounce_poll.test_connection(dovecot.url(user))
    assert (report.ok, report.message_count) == (True, 1)


# ---------------------------------------------------------------- the command line


def run_cli(app: Flask, *args: str, imap_url: str) -> Result:
    app.config["SLUICE_SETTINGS"] = replace(app_settings(app), imap_url=imap_url)
    return CliRunner().invoke(build_cli(), list(args), obj=ScriptInfo(create_app=lambda: app))


def test_cli_test_connection_prints_what_the_server_said(
    app: Flask, dovecot: DovecotServer, user: str
) -> None:
    dovecot.append(user, [message(1), message(2)])

    result = run_cli(app, "bounces", "test-connection", imap_url=dovecot.url(user))

    assert result.exit_code == 0, result.output
    assert "Greeting: * OK" in result.output and "Dovecot" in result.output
    assert "Connection: plain text (local server)" in result.output
    assert "Login: accepted" in result.output
    assert "Folder INBOX: 2 message(s)" in result.output
    assert "secret" not in result.output


def test_cli_test_connection_fails_with_the_servers_words(
    app: Flask, dovecot: DovecotServer, user: str
) -> None:
    url = f"imap://{user}:wrong@127.0.0.1:{dovecot.port}/INBOX"

    result = run_cli(app, "bounces", "test-connection", imap_url=url)

    assert result.exit_code == 1
    assert "Failed at login: [AUTHENTICATIONFAILED] Authentication failed." in result.output
    assert "the connection test failed at the login step" in result.output


@pytest.mark.parametrize("args", [["poll", "--once"], ["test-connection"]])
def test_cli_without_a_mailbox_says_which_setting_is_missing(app: Flask, args: list[str]) -> None:
    result = run_cli(app, "bounces", *args, imap_url="")
    assert result.exit_code == 1
    assert "no bounce mailbox is configured: set SLUICE_IMAP_URL" in result.output


def test_cli_poll_needs_once(app: Flask) -> None:
    result = run_cli(app, "bounces", "poll", imap_url="imap://u:p@127.0.0.1/INBOX")
    assert result.exit_code == 2 and "needs --once" in result.output


def test_cli_poll_refuses_a_malformed_url(app: Flask) -> None:
    result = run_cli(app, "bounces", "poll", "--once", imap_url="pop3://u:p@host/INBOX")
    assert result.exit_code == 1
    assert "SLUICE_IMAP_URL: the IMAP URL must start with imaps:// or imap://" in result.output


# ---------------------------------------------------------------- a real kill


def test_a_poller_process_killed_mid_poll_loses_nothing_and_counts_nothing_twice(
    poll: PollRunner,
    session: Session,
    clock: FixedClock,
    database_url: str,
    dovecot: DovecotServer,
    user: str,
    tmp_path: Path,
) -> None:
    dovecot.append(user, [message(n) for n in range(1, 13)])
    session.commit()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.bounce_poll_process",
            database_url,
            dovecot.url(user),
            str(tmp_path / "killed-instance"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # Commits: 1 is the lease; 2-6 the first batch, then 7 and 8 are the
        # second batch's first two messages, committed and not yet moved.
        for line in process.stdout:
            if line.strip() == "committed 8":
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)

    # Normally 1-7 committed and 1-5 moved; on a slow machine the kill may
    # land later, so the test holds for any moment.
    committed = counted(session)
    assert committed == list(range(1, len(committed) + 1)) and len(committed) >= 7
    moved, waiting = (
        numbers(dovecot.bodies(user, "Processed")),
        numbers(dovecot.bodies(user, "INBOX")),
    )
    assert sorted(moved + waiting) == list(range(1, 13))  # nothing lost
    assert set(moved) <= set(committed)  # nothing moved before its commit
    assert checkpoint_row(session).last_uid == len(committed)
    if len(committed) < 12:
        assert checkpoint_row(session).locked_by == "killed-runner"  # died holding the lease

    clock.advance(datetime.now(UTC) + LEASE + timedelta(seconds=1) - clock.now())
    result = poll(batch_size=5)

    assert result.error == ""
    assert result.stats is not None
    assert result.stats.again == len(set(waiting) & set(committed))  # moved now, not counted
    assert counted(session) == list(range(1, 13))  # each once
    assert dovecot.contents(user, "INBOX") == {}
    assert numbers(dovecot.bodies(user, "Processed")) == list(range(1, 13))
