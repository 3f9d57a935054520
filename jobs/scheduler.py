"""The job table and the runner that schedules it (APScheduler 3.x).

Rules:

- **Stable ids.** Each job is scheduled under the id of ``JOBS``; the run
  records, ``sluice jobs`` and the jobs page use the same ids.
- **Intervals.** ``activate-due`` and ``dispatch`` run every
  ``tick_interval_seconds`` (a runtime setting); ``bounce-poll`` every
  ``bounce_poll_interval_seconds``; ``bounce-digest`` every hour (each
  profile's digest is at most daily); ``contact-import`` every
  ``contact_import.INTERVAL_SECONDS``; housekeeping every
  ``HOUSEKEEPING_SECONDS``, which is also the heartbeat. Housekeeping
  applies a changed interval, so an administrator's change reaches every
  runner within that time, without a restart.
- **Every job runs once at start**, then on its interval.
- **One run at a time** (``max_instances=1``): a tick longer than the
  interval is not overlapped by the next one in the same process; between
  processes the claim lock keeps portions apart (``app.services.dispatch``).
- **Coalesce, and a misfire grace of one interval.** Runs missed while the
  process was stopped or starved are run once, if no later than one
  interval; older ones are dropped rather than replayed in a burst (the
  quota would hold anyway, but a burst of ticks serves nobody).
- **Stopping** waits for the runs under way (their SMTP results are
  committed as they come) and records the runner as stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask

from app.context import app_clock, runner_id
from app.extensions import current_session
from app.services import job_runs
from app.services.runtime_settings import RuntimeSettings, get_runtime_settings
from jobs import activate_due, bounce_digest, bounce_poll, contact_import, dispatch, housekeeping
from jobs.recording import JobContext, Work, run_recorded

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 30


@dataclass(frozen=True)
class JobSpec:
    id: str
    work: Work
    description: str
    interval: Callable[[RuntimeSettings], int]  # seconds


def _tick(runtime: RuntimeSettings) -> int:
    return runtime.tick_interval_seconds


JOBS: tuple[JobSpec, ...] = (
    JobSpec(activate_due.JOB_ID, activate_due.run, "start mass emails whose time came", _tick),
    JobSpec(dispatch.JOB_ID, dispatch.run, "send a portion under the hourly quota", _tick),
    JobSpec(
        housekeeping.JOB_ID,
        housekeeping.run,
        "heartbeat, expired leases, old run records",
        lambda runtime: HOUSEKEEPING_SECONDS,
    ),
    JobSpec(
        bounce_poll.JOB_ID,
        bounce_poll.run,
        "read the bounce mailbox and apply what it holds",
        lambda runtime: runtime.bounce_poll_interval_seconds,
    ),
    JobSpec(
        bounce_digest.JOB_ID,
        bounce_digest.run,
        "send the points of contact their daily bounce digest",
        lambda runtime: bounce_digest.INTERVAL_SECONDS,
    ),
    JobSpec(
        contact_import.JOB_ID,
        contact_import.run,
        "import the big CSV files uploaded in the browser",
        lambda runtime: contact_import.INTERVAL_SECONDS,
    ),
)
JOB_IDS = tuple(spec.id for spec in JOBS)


class JobRunner:
    """The scheduler of one runner process, in background threads: the
    caller's thread stays free to wait for a stop request (``sluice
    worker``) or to serve the web UI (``sluice run``)."""

    def __init__(self, app: Flask, *, runner: str | None = None) -> None:
        self.app = app
        self.runner_id = runner or runner_id()
        self.scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True}
        )
        self.context = JobContext(app, self.runner_id, self)
        self.intervals: dict[str, int] = {}
        # Runs under way, counted here rather than left to
        # ``shutdown(wait=True)``: that holds the scheduler's lock while it
        # waits, and a run asking for the schedule (its heartbeat) would
        # wait for that lock forever.
        self._running = 0
        self._idle = threading.Condition()

    def start(self, *, paused: bool = False) -> None:
        """Schedule every job (each runs at once) and start; ``paused``
        schedules without running anything (tests). Raises ``LookupError``
        when the database has no runtime settings yet."""
        with self.app.app_context():
            runtime = get_runtime_settings(current_session())
        for spec in JOBS:
            seconds = spec.interval(runtime)
            self.intervals[spec.id] = seconds
            self.scheduler.add_job(
                self.run,
                IntervalTrigger(seconds=seconds, timezone=UTC),
                args=(spec,),
                id=spec.id,
                name=spec.description,
                misfire_grace_time=seconds,
                next_run_time=datetime.now(UTC),  # the scheduler runs on real time
            )
        log.info("runner %s starts jobs %s", self.runner_id, ", ".join(JOB_IDS))
        self.scheduler.start(paused=paused)

    def run(self, spec: JobSpec) -> None:
        """One recorded run of ``spec`` (what the scheduler calls)."""
        with self._idle:
            self._running += 1
        try:
            run_recorded(self.context, spec.id, spec.work)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def stop(self) -> None:
        """Stop scheduling, wait for the runs under way, record the stop."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0)
        with self.app.app_context():
            session = current_session()
            job_runs.runner_stopped(session, self.runner_id, app_clock(self.app))
            session.commit()

    # ------------------------------------------------------------ Scheduling

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self.scheduler.get_jobs()}

    def apply_intervals(self, runtime: RuntimeSettings) -> list[str]:
        """Reschedule the jobs whose interval setting changed; returns their ids."""
        changed = []
        for spec in JOBS:
            seconds = spec.interval(runtime)
            if self.intervals.get(spec.id, seconds) == seconds:
                continue
            self.intervals[spec.id] = seconds
            job = self.scheduler.get_job(spec.id)
            if job is None:
                continue
            job.modify(misfire_grace_time=seconds)
            # Next run: one new interval from now.
            job.reschedule(IntervalTrigger(seconds=seconds, timezone=UTC))
            changed.append(spec.id)
        return changed
