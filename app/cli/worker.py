"""``sluice worker`` (the job runner in its own process) and ``sluice jobs``
(what the runners are doing)."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import datetime
from types import FrameType

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from app.cli.common import console_logging
from app.context import app_clock
from app.extensions import current_session
from app.services.job_runs import JobState, RunnerState, job_states, runners
from jobs.scheduler import JOB_IDS, JobRunner


def stop_on_sigterm() -> None:
    """SIGTERM (systemd, docker stop) stops like Ctrl+C (``sluice run``:
    waitress ends its loop on either)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, handler)


def start_background_runner(app: Flask) -> JobRunner:
    runner = JobRunner(app)
    try:
        runner.start()
    except LookupError as error:  # no runtime settings: not initialised
        raise click.ClickException(str(error)) from None
    return runner


@click.command("worker")
@with_appcontext
def worker_command() -> None:
    """Run the scheduled jobs (start due mass emails, send portions,
    housekeeping) until stopped. Several workers may share one PostgreSQL."""
    console_logging("%(asctime)s %(name)s: %(message)s")
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    # The signal handlers only set a flag: the jobs run in the scheduler's
    # threads, and this thread stops them in order once asked.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stop.set())
    runner = start_background_runner(app)
    click.echo(f"Sluice worker {runner.runner_id}: jobs {', '.join(JOB_IDS)} (Ctrl+C stops it)")
    try:
        while not stop.wait(timeout=1):
            pass
        click.echo("Stopping: waiting for the runs under way…")
    finally:
        runner.stop()
    click.echo("Sluice worker stopped.")


def _span(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def _age(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    return f"{_span(max(0, round((now - moment).total_seconds())))} ago"


def _until(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    seconds = round((moment - now).total_seconds())
    return f"in {_span(seconds)}" if seconds > 0 else "now"


def runner_lines(states: list[RunnerState], now: datetime) -> list[str]:
    if not states:
        return ["Runners: none has ever started; run `sluice worker` (or `sluice run`)."]
    lines = ["Runners:"]
    for state in states:
        status = "alive" if state.alive else ("stopped" if state.stopped_at else "NOT RESPONDING")
        lines.append(f"  {state.id}  {status}, heartbeat {_age(state.heartbeat_at, now)}")
    return lines


def job_lines(states: list[JobState], now: datetime) -> list[str]:
    lines = ["Jobs:"]
    for state in states:
        active = "active" if state.active else "inactive"
        lines.append(f"  {state.job_id:<14} {active:<8} next run: {_until(state.next_run_at, now)}")
        if state.last_outcome is None:
            lines.append("      last run: never")
            continue
        lines.append(
            f"      last run: {_age(state.last_started_at, now)}, {state.last_outcome}"
            + (f": {state.last_result}" if state.last_result else "")
        )
        if state.last_error:
            lines.append(f"      error: {state.last_error}")
    return lines


@click.command("jobs")
@with_appcontext
def jobs_command() -> None:
    """Each scheduled job: active, last run and result, next run; and the runners."""
    session = current_session()
    now = app_clock(current_app).now()
    for line in runner_lines(runners(session, app_clock(current_app)), now):
        click.echo(line)
    for line in job_lines(job_states(session, app_clock(current_app), JOB_IDS), now):
        click.echo(line)
