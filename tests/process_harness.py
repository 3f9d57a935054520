"""Dispatcher runners as real processes: the harness shared by
``tests/integration/test_multiprocess.py``, ``tests/integration/test_crash.py``
and ``bench/crash.py``.

What it holds, and the rules each keeps:

- ``FileClock``: one fake "now" for every process, kept in a small file.
  Only the controlling process (the test) writes it, by atomic replace
  (``os.replace``), so a reader sees the old time or the new one, never half
  a line. The runners and the SMTP server read it on every ``now()``.
- ``clocked_smtp_server``: the test SMTP server (``tests.smtp_server``,
  same fault injection) run in the controlling process, which also records
  each accepted message's recipient, queue item id and the fake time of
  acceptance. ``reply_delay`` holds the 250 reply back after the message
  was recorded (a slow relay), so a runner killed then leaves a message
  that arrived but whose result was never committed: the case the lease
  exists for.
- ``fork_server`` / ``RunnerProcess``: runners of ``tests.runner_process``,
  each a process of its own running the product's ``activate_due`` +
  ``dispatch_tick``, forked by one server process that imported the app
  once; stopped through a file, or killed with SIGKILL.
- ``seed_campaign``: a scheduled (pending) mass email to N new contacts
  through the services, so the runners' ``activate_due`` builds its queue.
- ``reconcile``: the ledger (queue items) against the server's copies:
  duplicates, lost items, interrupted items received or not.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope
from aiosmtpd.smtp import Session as SMTPSession
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import Contact, MassEmail, QueueItem, QueueItemStatus, TargetListMember
from app.services.campaigns import (
    TemplateInput,
    add_mass_email,
    create_campaign,
    create_sender_profile,
    save_template,
    schedule_mass_email,
)
from app.services.runtime_settings import (
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from app.services.target_lists import create_target_list
from config import Settings, load_settings
from tests.smtp_server import FaultyHandler, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RUNNER_SECRET_KEY = "runner-secret-key-not-for-production"
SITE_URL = "https://sluice.example.com"
Q = QueueItemStatus


# ----------------------------------------------------------------- the clock


class FileClock:
    """A ``Clock`` whose time is the ISO-8601 line in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text())

    def set(self, moment: datetime) -> None:
        """Write ``moment``; readers see it whole (atomic replace)."""
        scratch = self.path.with_name(self.path.name + ".next")
        scratch.write_text(moment.isoformat())
        os.replace(scratch, self.path)

    def advance(self, delta: timedelta) -> None:
        self.set(self.now() + delta)


# ----------------------------------------------------------------- the SMTP server


QUEUE_ITEM_HEADER = re.compile(rb"^X-Sluice-Queue-Item: *(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Acceptance:
    """One message the server accepted: for whom, which queue item (its
    ``X-Sluice-Queue-Item`` header) and when by the shared clock."""

    recipient: str
    queue_item_id: int | None
    at: datetime


@dataclass
class ClockedHandler(FaultyHandler):
    """``FaultyHandler`` that stamps each acceptance with the shared clock."""

    clock: Clock | None = None
    reply_delay: float = 0.0  # seconds between recording a message and the 250
    accepted: list[Acceptance] = field(default_factory=list)

    async def handle_DATA(
        self, server: SMTPServer, session: SMTPSession, envelope: Envelope
    ) -> str:
        before = len(self.messages)
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.messages) > before:
            assert self.clock is not None
            message = self.messages[-1]
            headers = message.data.split(b"\r\n\r\n", 1)[0]
            header = QUEUE_ITEM_HEADER.search(headers)
            item_id = int(header.group(1)) if header else None
            at = self.clock.now()
            self.accepted.extend(Acceptance(rcpt, item_id, at) for rcpt in message.recipients)
            message.data = b""  # thousands of messages: keep the envelope only
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        return reply


@dataclass(frozen=True)
class ClockedServer:
    handler: ClockedHandler
    url: str


@contextmanager
def clocked_smtp_server(clock: Clock, reply_delay: float = 0.0) -> Iterator[ClockedServer]:
    """aiosmtpd on a free port of 127.0.0.1, in a thread of this process."""
    handler = ClockedHandler(clock=clock, reply_delay=reply_delay)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield ClockedServer(handler, f"smtp://127.0.0.1:{port}?timeout=30")
    finally:
        controller.stop()


# ----------------------------------------------------------------- runner processes


def runner_settings(database_url: str, smtp_url: str, instance_path: Path) -> Settings:
    """The boot settings of a runner process."""
    return load_settings(
        environ={},
        database_url=database_url,
        instance_path=str(instance_path),
        secret_key=RUNNER_SECRET_KEY,
        smtp_url=smtp_url,
        bounce_address="bounces@bounce.example.com",
    )


class RunnerError(RuntimeError):
    """A runner process died or did not start; carries its log."""


class ForkServer:
    """``python -m tests.runner_process --fork-server``: forks runners."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.runner_process", "--fork-server"],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.runners: list[RunnerProcess] = []

    def fork(self, arguments: list[str]) -> int:
        """A new runner's process id."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(arguments) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RunnerError(f"the fork server exited with {self.process.wait()}")
        return int(answer)

    def runner(
        self, folder: Path, database_url: str, smtp_url: str, clock_path: Path
    ) -> RunnerProcess:
        runner = RunnerProcess(self, folder, database_url, smtp_url, clock_path)
        self.runners.append(runner)
        return runner

    def close(self) -> None:
        """Kill what still runs (a failed test), then end the server."""
        for runner in self.runners:
            runner.kill()
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


@contextmanager
def fork_server() -> Iterator[ForkServer]:
    server = ForkServer()
    try:
        yield server
    finally:
        server.close()


class RunnerProcess:
    """One forked runner (``tests.runner_process``); its folder holds its
    log, the ``ready`` file it writes once it loops, the ``stop`` file that
    ends it and the ``exit`` file with its exit status."""

    def __init__(
        self, server: ForkServer, folder: Path, database_url: str, smtp_url: str, clock_path: Path
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        for leftover in ("ready", "stop", "exit"):
            (folder / leftover).unlink(missing_ok=True)
        self.pid = server.fork([database_url, smtp_url, str(clock_path), str(folder)])

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)  # the fork server ignores SIGCHLD: no zombies
        except ProcessLookupError:
            return False
        return True

    def log_text(self) -> str:
        path = self.folder / "runner.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def exit_status(self) -> int | None:
        """Its exit status; None while it runs or when it was killed."""
        path = self.folder / "exit"
        return int(path.read_text()) if path.exists() and path.read_text() else None

    def _failure(self, what: str) -> RunnerError:
        return RunnerError(f"runner {self.pid} {what}:\n{self.log_text()}")

    def check_alive(self) -> None:
        if not self.alive:
            raise self._failure(f"exited with {self.exit_status()}")

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait (real time: its start-up) until it loops."""
        deadline = time.monotonic() + timeout
        while not (self.folder / "ready").exists():
            self.check_alive()
            if time.monotonic() > deadline:
                self.kill()
                raise self._failure(f"not ready after {timeout} s")
            time.sleep(0.005)

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def kill(self) -> None:
        """SIGKILL: no handler, no clean-up, no last commit; returns once
        the process is gone."""
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if not self.wait_gone(30):
            raise self._failure("survived SIGKILL for 30 s")

    def stop(self, timeout: float = 60) -> int | None:
        """Ask it to finish its tick and leave; returns its exit status."""
        (self.folder / "stop").touch()
        if not self.wait_gone(timeout):
            self.kill()
            raise self._failure(f"did not stop within {timeout} s")
        return self.exit_status()


# ----------------------------------------------------------------- the campaign


def addresses(count: int, prefix: str = "rcpt") -> list[str]:
    return [f"{prefix}{number:05d}@example.org" for number in range(count)]


def seed_campaign(
    session: Session,
    clock: Clock,
    settings: Settings,
    recipients: Sequence[str],
    runtime_changes: Mapping[str, object],
) -> int:
    """Runtime settings (seeded, then ``runtime_changes``), one new contact
    per address on one target list, and a mass email to it scheduled to
    start now: pending, its queue not built. Commits; returns its id."""
    seed_runtime_settings(session, settings, clock)
    footer = {"site_url": SITE_URL, "company_name": "Example Corp", "postal_address": "1 Main St"}
    update_runtime_settings(session, {**footer, **runtime_changes}, clock)
    now = clock.now()
    targets = create_target_list(session, "Everyone", "", clock)
    contact_ids = session.scalars(
        insert(Contact).returning(Contact.id, sort_by_parameter_order=True),
        [
            {
                "email": address,
                "email_lower": address.lower(),
                "first_name": address.split("@")[0].title(),
                "custom_fields": {},
                "created_at": now,
                "updated_at": now,
            }
            for address in recipients
        ],
    ).all()
    session.execute(
        insert(TargetListMember),
        [{"target_list_id": targets.id, "contact_id": cid, "added_at": now} for cid in contact_ids],
    )
    profile = create_sender_profile(
        session, "News", "Example News", "news@example.com", "team@example.com"
    )
    template = save_template(
        session,
        TemplateInput(name="Spring", subject="News for {{ FIRST_NAME }}", body_html="<p>Hi!</p>"),
        clock,
    )
    campaign = create_campaign(
        session,
        name="Spring",
        type="newsletter",
        target_list_ids=[targets.id],
        excluding_list_ids=[],
        sender_profile_id=profile.id,
        clock=clock,
    )
    mass_email = add_mass_email(session, campaign, template_id=template.id, clock=clock)
    schedule_mass_email(
        session,
        mass_email,
        start_at=None,
        can_spam_confirmed=True,
        runtime=get_runtime_settings(session),
        settings=settings,
        secret_key=RUNNER_SECRET_KEY,
        clock=clock,
    )
    session.commit()
    return mass_email.id


def mass_email_status(session: Session, mass_email_id: int) -> str:
    status = session.scalar(select(MassEmail.status).where(MassEmail.id == mass_email_id))
    return str(status)


def item_counts(session: Session, mass_email_id: int) -> Counter[str]:
    """Queue items of the mass email per status."""
    rows = session.execute(
        select(QueueItem.status, func.count())
        .where(QueueItem.mass_email_id == mass_email_id)
        .group_by(QueueItem.status)
    ).all()
    return Counter({str(status): count for status, count in rows})


# ----------------------------------------------------------------- the ledger against the server


@dataclass
class Reconciliation:
    """Queue items against the server's copies.

    ``duplicates``: addresses the server accepted more than once.
    ``lost``: items neither accounted for nor delivered: a status outside
    ``allowed``, a ``sent`` item with no copy, a ``queued`` item with a copy
    (its result vanished), a copy for an item of another address, or a
    recipient without an item.
    """

    statuses: Counter[str]
    copies: int
    received: int  # distinct addresses
    duplicates: list[str]
    lost: list[str]
    interrupted_received: list[str]
    interrupted_not_received: list[str]

    @property
    def interrupted(self) -> int:
        return len(self.interrupted_received) + len(self.interrupted_not_received)


def reconcile(
    session: Session,
    mass_email_id: int,
    recipients: Sequence[str],
    accepted: Sequence[Acceptance],
    allowed: frozenset[QueueItemStatus],
) -> Reconciliation:
    session.commit()
    items = session.execute(
        select(QueueItem.id, QueueItem.email, QueueItem.status).where(
            QueueItem.mass_email_id == mass_email_id
        )
    ).all()
    copies = Counter(acceptance.recipient for acceptance in accepted)
    address_of = {item_id: email for item_id, email, _ in items}
    lost = [
        f"{email}: no queue item" for email in sorted(set(recipients) - set(address_of.values()))
    ]
    lost += [
        f"{a.recipient}: copy of queue item {a.queue_item_id}"
        for a in accepted
        if address_of.get(a.queue_item_id or 0) != a.recipient
    ]
    received_interrupted, unreceived_interrupted = [], []
    for _, email, status in items:
        received = copies[email]
        if status not in allowed:
            lost.append(f"{email}: {status}")
        elif status == Q.SENT and received == 0:
            lost.append(f"{email}: sent, never received")
        elif status == Q.QUEUED and received:
            lost.append(f"{email}: queued, yet received")
        elif status == Q.INTERRUPTED:
            (received_interrupted if received else unreceived_interrupted).append(email)
    return Reconciliation(
        statuses=Counter(str(status) for _, _, status in items),
        copies=len(accepted),
        received=len(copies),
        duplicates=sorted(address for address, count in copies.items() if count > 1),
        lost=lost,
        interrupted_received=sorted(received_interrupted),
        interrupted_not_received=sorted(unreceived_interrupted),
    )
