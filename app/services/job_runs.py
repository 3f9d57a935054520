"""Job-run records and runner heartbeats: what ``sluice jobs`` and the jobs
page show (SPEC §7: each job's state, last run, result and next run; is a
runner alive).

Rules:

- **Every run is recorded.** A run's row is committed when it starts
  (``running``) and again when it ends (``ok`` with a one-line result, or
  ``error`` with the error), so a run that hangs or whose process dies is
  visible as such.
- **A runner is alive** while its heartbeat is younger than
  ``RUNNER_STALE_AFTER``. Each heartbeat also stores the runner's schedule
  (job id → next run), which is where "next run" comes from: APScheduler
  keeps its schedule in memory, per process.
- **Runs of a dead runner** still ``running`` are closed as ``error`` by
  ``close_abandoned_runs`` (housekeeping of any live runner), so the page
  never shows a run as going on forever.
- **Retention.** Runs older than ``KEEP_RUNS`` are deleted (one row per job
  per tick adds up: 1,440 a day per job and runner at the default tick);
  the newest run of each job is always kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import JobRun, JobRunOutcome, Runner
from app.services.bulk_sql import upsert

RUNNER_STALE_AFTER = timedelta(minutes=3)
KEEP_RUNS = timedelta(days=7)
# Texts are cut to this length: an SMTP reply or traceback line is enough.
MAX_TEXT = 2000


def start_run(session: Session, job_id: str, runner_id: str, clock: Clock) -> int:
    """Record that ``job_id`` starts; flushes and returns the run's id."""
    run = JobRun(
        job_id=job_id,
        runner_id=runner_id,
        started_at=clock.now(),
        outcome=JobRunOutcome.RUNNING,
        result="",
        error="",
    )
    session.add(run)
    session.flush()
    return run.id


def finish_run(
    session: Session, run_id: int, clock: Clock, *, result: str = "", error: str = ""
) -> None:
    """Record the end of a run: ``error`` set means it failed. Flushes."""
    session.execute(
        update(JobRun)
        .where(JobRun.id == run_id)
        .values(
            finished_at=clock.now(),
            outcome=JobRunOutcome.ERROR if error else JobRunOutcome.OK,
            result=result[:MAX_TEXT],
            error=error[:MAX_TEXT],
        )
    )


def heartbeat(
    session: Session, runner_id: str, clock: Clock, schedule: Mapping[str, datetime | None]
) -> None:
    """Record that ``runner_id`` is alive and when it runs each job next
    (``None``: the job is paused in that runner). Flushes."""
    now = clock.now()
    stored = {job_id: when.isoformat() if when else None for job_id, when in schedule.items()}
    # Several jobs of a new runner beat at once: one statement inserts or
    # updates, so none of them fails on the other's insert.
    upsert(
        session,
        Runner,
        "id",
        {
            "id": runner_id,
            "started_at": now,
            "heartbeat_at": now,
            "stopped_at": None,
            "schedule": stored,
        },
        insert_only={"started_at"},
    )


def runner_stopped(session: Session, runner_id: str, clock: Clock) -> None:
    """Record a clean stop, so the runner is not mistaken for a dead one. Flushes."""
    session.execute(
        update(Runner).where(Runner.id == runner_id).values(stopped_at=clock.now(), schedule={})
    )


def close_abandoned_runs(session: Session, clock: Clock) -> int:
    """Runs still ``running`` whose runner stopped or stopped beating become
    ``error``; returns how many. Flushes."""
    live = _live_runner_ids(session, clock)
    result = session.execute(
        update(JobRun)
        .where(JobRun.outcome == JobRunOutcome.RUNNING, JobRun.runner_id.not_in(live))
        .values(
            finished_at=clock.now(),
            outcome=JobRunOutcome.ERROR,
            error="its runner stopped during the run",
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def prune(session: Session, clock: Clock) -> int:
    """Delete runs older than ``KEEP_RUNS`` except each job's newest, and
    runners stopped or silent for as long. Returns the runs deleted. Flushes."""
    cutoff = clock.now() - KEEP_RUNS
    newest = select(func.max(JobRun.id)).group_by(JobRun.job_id)
    result = session.execute(
        delete(JobRun)
        .where(JobRun.started_at < cutoff, JobRun.id.not_in(newest))
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(Runner).where(Runner.heartbeat_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _live_runner_ids(session: Session, clock: Clock) -> list[str]:
    return list(
        session.scalars(
            select(Runner.id).where(
                Runner.stopped_at.is_(None),
                Runner.heartbeat_at >= clock.now() - RUNNER_STALE_AFTER,
            )
        )
    )


# ----------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunnerState:
    id: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    alive: bool


@dataclass(frozen=True)
class JobState:
    """One job as the jobs page shows it, over all runners."""

    job_id: str
    active: bool  # some live runner has it scheduled
    next_run_at: datetime | None  # the earliest among live runners
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_outcome: JobRunOutcome | None
    last_result: str
    last_error: str


def runners(session: Session, clock: Clock) -> list[RunnerState]:
    """Every runner known, newest heartbeat first."""
    stale = clock.now() - RUNNER_STALE_AFTER
    return [
        RunnerState(
            id=runner.id,
            started_at=runner.started_at,
            heartbeat_at=runner.heartbeat_at,
            stopped_at=runner.stopped_at,
            alive=runner.stopped_at is None and runner.heartbeat_at >= stale,
        )
        for runner in session.scalars(select(Runner).order_by(Runner.heartbeat_at.desc()))
    ]


def job_states(session: Session, clock: Clock, job_ids: Iterable[str]) -> list[JobState]:
    """The state of each job in ``job_ids`` (the runner's job table), in
    that order, plus any other job with recorded runs."""
    schedules = [
        runner.schedule
        for runner in session.scalars(
            select(Runner).where(Runner.id.in_(_live_runner_ids(session, clock)))
        )
    ]
    latest = {run.job_id: run for run in _latest_runs(session)}
    ordered = list(dict.fromkeys([*job_ids, *sorted(latest)]))
    return [_job_state(job_id, latest.get(job_id), schedules) for job_id in ordered]


def _latest_runs(session: Session) -> Iterable[JobRun]:
    newest = select(func.max(JobRun.id)).group_by(JobRun.job_id)
    return session.scalars(select(JobRun).where(JobRun.id.in_(newest)))


def _job_state(job_id: str, run: JobRun | None, schedules: list[dict[str, str | None]]) -> JobState:
    next_runs = [
        datetime.fromisoformat(when)
        for schedule in schedules
        if (when := schedule.get(job_id)) is not None
    ]
    return JobState(
        job_id=job_id,
        active=bool(next_runs),
        next_run_at=min(next_runs) if next_runs else None,
        last_started_at=run.started_at if run else None,
        last_finished_at=run.finished_at if run else None,
        last_outcome=run.outcome if run else None,
        last_result=run.result if run else "",
        last_error=run.error if run else "",
    )
