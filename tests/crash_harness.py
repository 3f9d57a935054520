"""The crash drill shared by ``tests/integration/test_crash.py`` and
``bench/crash.py``: one runner process killed with SIGKILL at random
moments of a campaign and restarted after each kill.

The drill, and why each step is there:

1. A mass email to ``CrashDrill.recipients()`` new contacts is scheduled;
   the first runner's ``activate_due`` builds its queue.
2. ``kills`` times: a runner starts, works for a random real time in
   ``[0, max_delay]`` once it is ready (``random.Random(seed)``: the seed is
   reported, so a failing drill can be replayed as far as timing allows),
   and is killed with SIGKILL. The relay holds each 250 back for
   ``reply_delay`` after recording the message, so a kill often falls
   between a message's arrival and the commit of its result: the in-doubt
   case. Between a kill and the next start the shared clock moves past the
   lease, so the next runner's housekeeping turns the dead runner's
   ``sending`` items into ``interrupted``. The clock never moves while a
   runner lives, so no lease runs out under a live runner.
3. After the last kill the clock moves past the lease once more and
   housekeeping runs here; then ``after_kills`` reconciles the ledger with
   the server: every item ``sent``, ``queued`` or ``interrupted``, no
   address received twice, nothing lost.
4. A person decides to send the interrupted items again:
   ``retry_interrupted``, then a runner (no kill, no reply delay) sends
   everything left until the mass email is complete; ``after_retry``
   reconciles again. An interrupted item that had arrived is now received
   twice, the others once: that is why a person, not the dispatcher,
   decides to retry.

The campaign is larger than the relay can take during all the kills (at
most ``smtp_connections`` messages per ``reply_delay`` while a runner
lives), so it is still in progress after step 3 and the retry of step 4 is
allowed.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from app.models import MassEmailStatus, QueueItemStatus
from app.services.dispatch import housekeeping, retry_interrupted
from app.services.runtime_settings import update_runtime_settings
from config import Settings
from tests.process_harness import (
    START,
    FileClock,
    Reconciliation,
    RunnerError,
    RunnerProcess,
    addresses,
    clocked_smtp_server,
    fork_server,
    mass_email_status,
    reconcile,
    seed_campaign,
)

Q = QueueItemStatus
AFTER_KILLS = frozenset({Q.SENT, Q.QUEUED, Q.INTERRUPTED})
COMPLETE_WITHIN_SECONDS = 600
DRAIN_BATCH_SIZE = 500


@dataclass(frozen=True)
class CrashDrill:
    kills: int = 20
    seed: int = 0
    max_delay: float = 1.0  # real seconds a runner works before its kill, at most
    reply_delay: float = 0.05  # real seconds the relay holds back each 250
    smtp_connections: int = 2
    batch_size: int = 20
    lease_seconds: int = 60

    def recipients(self) -> int:
        """More than the relay can accept during all the kills."""
        per_kill = self.smtp_connections * (self.max_delay / self.reply_delay + 1)
        return math.ceil(self.kills * per_kill * 1.1) + 50

    def runtime(self) -> dict[str, object]:
        return {
            "max_per_hour": 10_000_000,  # the quota is the multi-process test's subject
            "batch_size": self.batch_size,
            "smtp_connections": self.smtp_connections,
            "lease_seconds": self.lease_seconds,
        }


@dataclass
class CrashResult:
    drill: CrashDrill
    recipients: int
    after_kills: Reconciliation
    requeued: int  # by retry_interrupted
    after_retry: Reconciliation
    seconds: float
    kill_delays: list[float] = field(default_factory=list)


def run_crash_drill(
    session: Session,
    settings: Settings,
    database_url: str,
    folder: Path,
    drill: CrashDrill,
    log: Callable[[str], None] = print,
) -> CrashResult:
    """Steps 1-4 of the module's drill; ``session`` is the controller's,
    on ``database_url``; ``settings`` are its boot settings."""
    started = time.monotonic()
    clock = FileClock(folder / "clock")
    clock.set(START)
    recipients = addresses(drill.recipients())
    mass_email_id = seed_campaign(session, clock, settings, recipients, drill.runtime())
    lease = timedelta(seconds=drill.lease_seconds + 1)
    log(f"crash drill: seed {drill.seed}, {len(recipients)} recipients, {drill.kills} kills")
    with clocked_smtp_server(clock, drill.reply_delay) as server, fork_server() as forks:
        runner_folder = folder / "runner"

        def start() -> None:
            forks.runner(runner_folder, database_url, server.url, clock.path).wait_ready()

        rng = random.Random(drill.seed)
        delays = []
        for _ in range(drill.kills):
            start()
            delays.append(rng.uniform(0, drill.max_delay))
            time.sleep(delays[-1])  # the runner's real work until the kill
            forks.runners[-1].kill()
            log(f"killed after {delays[-1]:.2f}")
            clock.advance(lease)
        housekeeping(session, clock)
        session.commit()
        after_kills = reconcile(
            session, mass_email_id, recipients, list(server.handler.accepted), AFTER_KILLS
        )
        log(f"after the kills: {after_kills.statuses}")
        requeued = retry_interrupted(session, mass_email_id, clock)
        # The rest needs no small portions: bigger ones finish sooner.
        update_runtime_settings(session, {"batch_size": DRAIN_BATCH_SIZE}, clock)
        session.commit()
        server.handler.reply_delay = 0
        start()
        _until_complete(session, mass_email_id, forks.runners[-1])
        after_retry = reconcile(
            session, mass_email_id, recipients, list(server.handler.accepted), frozenset({Q.SENT})
        )
    return CrashResult(
        drill=drill,
        recipients=len(recipients),
        after_kills=after_kills,
        requeued=requeued,
        after_retry=after_retry,
        seconds=time.monotonic() - started,
        kill_delays=delays,
    )


def _until_complete(session: Session, mass_email_id: int, runner: RunnerProcess) -> None:
    """Let ``runner`` send until the mass email is complete, then stop it."""
    deadline = time.monotonic() + COMPLETE_WITHIN_SECONDS
    while True:
        session.commit()  # a fresh snapshot
        if mass_email_status(session, mass_email_id) == MassEmailStatus.COMPLETE:
            break
        runner.check_alive()
        if time.monotonic() > deadline:
            raise RunnerError(f"not complete within {COMPLETE_WITHIN_SECONDS} s")
        time.sleep(0.05)  # the runner's real work
    if runner.stop() != 0:
        raise RunnerError(f"the last runner failed:\n{runner.log_text()}")
