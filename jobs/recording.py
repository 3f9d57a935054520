"""Every job run is recorded (``app.services.job_runs``): a row committed
when it starts, finished with its result or its error; both moments are
also the runner's heartbeat. A job function never lets an exception reach
APScheduler, which would only log it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from flask import Flask
from sqlalchemy.orm import Session

from app.clock import Clock
from app.context import SmtpNotConfigured, app_clock
from app.extensions import current_session
from app.services import job_runs
from app.services.runtime_settings import RuntimeSettings

log = logging.getLogger(__name__)


class Scheduling(Protocol):
    """What housekeeping needs from the scheduler that runs it."""

    def next_runs(self) -> dict[str, datetime | None]: ...

    def apply_intervals(self, runtime: RuntimeSettings) -> list[str]: ...


@dataclass(frozen=True)
class JobContext:
    app: Flask
    runner_id: str
    scheduling: Scheduling


@dataclass(frozen=True)
class Outcome:
    """What a run did (one line), and a problem a person must look at
    (a run that worked but paused sending, say); a problem records the run
    as an error."""

    result: str
    problem: str = ""


Work = Callable[[JobContext, Session, Clock], Outcome]


def run_recorded(context: JobContext, job_id: str, work: Work) -> None:
    """Run ``work`` in a fresh app context, recorded as a run of ``job_id``."""
    with context.app.app_context():
        session = current_session()
        clock = app_clock(context.app)
        run_id = job_runs.start_run(session, job_id, context.runner_id, clock)
        session.commit()
        _beat(context, session, clock)
        try:
            outcome = work(context, session, clock)
        except Exception as error:  # recorded for the jobs page, then logged
            session.rollback()
            # A configuration problem is told in one line; anything else
            # with its traceback.
            expected = isinstance(error, SmtpNotConfigured | LookupError)
            log.error("job %s failed: %s", job_id, error, exc_info=not expected)
            outcome = Outcome("", f"{type(error).__name__}: {error}")
        job_runs.finish_run(session, run_id, clock, result=outcome.result, error=outcome.problem)
        session.commit()
        _beat(context, session, clock)


def _beat(context: JobContext, session: Session, clock: Clock) -> None:
    """Every run start and end is a heartbeat with the schedule as it is
    now (APScheduler has moved this job's next run before running it)."""
    # Read before writing: no database lock is held while the scheduler's
    # lock is awaited.
    schedule = context.scheduling.next_runs()
    job_runs.heartbeat(session, context.runner_id, clock, schedule)
    session.commit()
