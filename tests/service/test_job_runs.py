"""Job-run records, runner heartbeats and the job table: what `sluice jobs`
and the jobs page show, on both databases, with an injected clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock, FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import JobRun, JobRunOutcome, Runner
from app.services import job_runs
from app.services.runtime_settings import RuntimeSettings, update_runtime_settings
from jobs import bounce_poll, dispatch, housekeeping
from jobs.recording import JobContext, Outcome, run_recorded
from jobs.scheduler import HOUSEKEEPING_SECONDS, JOB_IDS, JobRunner, JobSpec
from tests.waiting import wait_until


def finished_run(session: Session, clock: Clock, job_id: str, runner: str, **end: str) -> int:
    run_id = job_runs.start_run(session, job_id, runner, clock)
    job_runs.finish_run(session, run_id, clock, **end)
    return run_id


def test_a_run_is_recorded_running_then_ok_or_error(session: Session, clock: FixedClock) -> None:
    run_id = job_runs.start_run(session, "dispatch", "r1", clock)
    session.commit()
    run = session.get(JobRun, run_id)
    assert run is not None
    assert (run.outcome, run.started_at, run.finished_at) == ("running", clock.now(), None)

    clock.advance(timedelta(seconds=3))
    job_runs.finish_run(session, run_id, clock, result="claimed 2: sent 2")
    failed = finished_run(session, clock, "dispatch", "r1", error="x" * 5000)
    session.commit()
    session.expire_all()
    assert (run.outcome, run.result, run.finished_at) == ("ok", "claimed 2: sent 2", clock.now())
    failed_run = session.get(JobRun, failed)
    assert failed_run is not None and failed_run.outcome == JobRunOutcome.ERROR
    assert len(failed_run.error) == job_runs.MAX_TEXT


def test_a_runner_is_alive_while_it_beats_and_stopped_when_it_says_so(
    session: Session, clock: FixedClock
) -> None:
    job_runs.heartbeat(session, "r1", clock, {"dispatch": clock.now() + timedelta(seconds=60)})
    job_runs.heartbeat(session, "r2", clock, {})
    job_runs.runner_stopped(session, "r2", clock)
    session.commit()
    [r1, r2] = sorted(job_runs.runners(session, clock), key=lambda state: state.id)
    assert (r1.alive, r2.alive, r2.stopped_at) == (True, False, clock.now())

    clock.advance(job_runs.RUNNER_STALE_AFTER + timedelta(seconds=1))
    assert not any(state.alive for state in job_runs.runners(session, clock))
    job_runs.heartbeat(session, "r1", clock, {})
    assert [state.id for state in job_runs.runners(session, clock) if state.alive] == ["r1"]


def test_job_states_show_last_run_and_the_earliest_next_run_of_live_runners(
    session: Session, clock: FixedClock
) -> None:
    now = clock.now()
    job_runs.heartbeat(session, "silent", clock, {"dispatch": now + timedelta(seconds=1)})
    clock.advance(job_runs.RUNNER_STALE_AFTER + timedelta(seconds=1))
    now = clock.now()
    job_runs.heartbeat(session, "r1", clock, {"dispatch": now + timedelta(seconds=50)})
    job_runs.heartbeat(
        session,
        "r2",
        clock,
        {"dispatch": now + timedelta(seconds=20), "housekeeping": None},
    )
    finished_run(session, clock, "dispatch", "r1", result="old")
    clock.advance(timedelta(seconds=5))
    finished_run(session, clock, "dispatch", "r2", error="SMTP down")
    finished_run(session, clock, "retired-job", "r2", result="done")
    session.commit()

    states = {state.job_id: state for state in job_runs.job_states(session, clock, JOB_IDS)}

    assert list(states) == [*JOB_IDS, "retired-job"]
    dispatch_state = states["dispatch"]
    assert dispatch_state.active and dispatch_state.next_run_at == now + timedelta(seconds=20)
    assert (dispatch_state.last_outcome, dispatch_state.last_error) == ("error", "SMTP down")
    # A job paused in its runner (no next run) and one never run are inactive.
    assert not states["housekeeping"].active and states["housekeeping"].last_outcome is None
    assert not states["activate-due"].active


def test_runs_of_a_dead_runner_are_closed_and_old_runs_pruned(
    session: Session, clock: FixedClock
) -> None:
    start = clock.now()
    finished_run(session, clock, "dispatch", "r1", result="first")
    job_runs.heartbeat(session, "live", clock, {})
    job_runs.heartbeat(session, "dead", clock, {})
    live_run = job_runs.start_run(session, "dispatch", "live", clock)
    dead_run = job_runs.start_run(session, "activate-due", "dead", clock)
    session.commit()
    clock.advance(job_runs.RUNNER_STALE_AFTER + timedelta(seconds=1))
    job_runs.heartbeat(session, "live", clock, {})

    assert job_runs.close_abandoned_runs(session, clock) == 1
    session.commit()
    session.expire_all()
    closed = session.get(JobRun, dead_run)
    assert closed is not None and closed.outcome == JobRunOutcome.ERROR
    assert "runner stopped" in closed.error
    still = session.get(JobRun, live_run)
    assert still is not None and still.outcome == JobRunOutcome.RUNNING

    clock.advance(job_runs.KEEP_RUNS)
    job_runs.heartbeat(session, "live", clock, {})
    newest = finished_run(session, clock, "housekeeping", "live", result="new")
    deleted = job_runs.prune(session, clock)
    session.commit()

    # Every run older than a week goes, except the newest of each job.
    assert deleted == 1
    kept = session.execute(select(JobRun.job_id, JobRun.started_at).order_by(JobRun.id)).all()
    assert [tuple(row) for row in kept] == [
        ("dispatch", start),
        ("activate-due", start),
        ("housekeeping", clock.now()),
    ]
    assert newest in session.scalars(select(JobRun.id))
    assert session.scalars(select(Runner.id)).all() == ["live"]


# ----------------------------------------------------------------- the runner


@pytest.fixture
def runner(
    app: Flask, runtime: RuntimeSettings, session: Session, clock: FixedClock
) -> Iterator[JobRunner]:
    session.commit()  # the seeded settings, for the runner's own sessions
    app.config[CLOCK_CONFIG_KEY] = clock
    runner = JobRunner(app, runner="test-runner")
    runner.start(paused=True)  # scheduled, nothing runs on its own
    yield runner
    runner.stop()


def test_every_job_is_scheduled_under_its_stable_id_one_at_a_time(
    runner: JobRunner, runtime: RuntimeSettings
) -> None:
    jobs = {job.id: job for job in runner.scheduler.get_jobs()}
    assert tuple(jobs) == JOB_IDS
    assert JOB_IDS == (
        "activate-due",
        "dispatch",
        "housekeeping",
        "bounce-poll",
        "bounce-digest",
        "contact-import",
    )
    intervals = {
        "housekeeping": HOUSEKEEPING_SECONDS,
        "bounce-poll": runtime.bounce_poll_interval_seconds,
        "bounce-digest": 3600,
        "contact-import": 10,
    }
    for job_id, job in jobs.items():
        seconds = intervals.get(job_id, runtime.tick_interval_seconds)
        assert job.trigger.interval == timedelta(seconds=seconds)
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, seconds)


def test_housekeeping_applies_a_changed_tick_interval_and_beats(
    runner: JobRunner, session: Session, clock: FixedClock
) -> None:
    update_runtime_settings(session, {"tick_interval_seconds": 15}, clock)
    session.commit()

    run_recorded(runner.context, housekeeping.JOB_ID, housekeeping.run)
    run_recorded(runner.context, housekeeping.JOB_ID, housekeeping.run)

    jobs = {job.id: job for job in runner.scheduler.get_jobs()}
    assert jobs["dispatch"].trigger.interval == timedelta(seconds=15)
    assert jobs["activate-due"].misfire_grace_time == 15
    assert jobs["housekeeping"].trigger.interval == timedelta(seconds=HOUSEKEEPING_SECONDS)
    session.expire_all()
    first, second = session.scalars(select(JobRun).order_by(JobRun.id)).all()
    assert first.outcome == second.outcome == JobRunOutcome.OK
    assert "new interval applied to activate-due, dispatch" in first.result
    assert "interval" not in second.result  # already applied
    beat = session.get(Runner, "test-runner")
    assert beat is not None and beat.heartbeat_at == clock.now()
    assert set(beat.schedule) == set(JOB_IDS)


def test_housekeeping_applies_a_changed_bounce_poll_interval(
    runner: JobRunner, session: Session, clock: FixedClock
) -> None:
    update_runtime_settings(session, {"bounce_poll_interval_seconds": 60}, clock)
    session.commit()

    run_recorded(runner.context, housekeeping.JOB_ID, housekeeping.run)

    jobs = {job.id: job for job in runner.scheduler.get_jobs()}
    assert jobs["bounce-poll"].trigger.interval == timedelta(seconds=60)
    assert jobs["bounce-poll"].misfire_grace_time == 60
    assert jobs["dispatch"].trigger.interval == timedelta(seconds=60)  # the tick, unchanged
    session.expire_all()
    run = session.scalars(select(JobRun)).one()
    assert "new interval applied to bounce-poll" in run.result


def test_bounce_poll_is_inactive_without_a_mailbox_and_says_so(
    runner: JobRunner, session: Session
) -> None:
    run_recorded(runner.context, bounce_poll.JOB_ID, bounce_poll.run)

    session.expire_all()
    run = session.scalars(select(JobRun)).one()
    assert (run.job_id, run.outcome, run.error) == ("bounce-poll", JobRunOutcome.OK, "")
    assert run.result == "inactive: no bounce mailbox configured (set SLUICE_IMAP_URL)"


def test_a_failing_run_is_recorded_with_its_error_and_the_runner_goes_on(
    runner: JobRunner, session: Session
) -> None:
    def broken(context: JobContext, session: Session, clock: Clock) -> Outcome:
        session.add(Runner(id="half-written"))  # rolled back, not committed
        raise RuntimeError("database went away")

    run_recorded(runner.context, "dispatch", broken)
    # No relay configured: the real dispatch job says which setting is missing.
    run_recorded(runner.context, dispatch.JOB_ID, dispatch.run)

    session.expire_all()
    runs = session.scalars(select(JobRun).order_by(JobRun.id)).all()
    assert [(run.outcome, run.error.split(":")[0]) for run in runs] == [
        ("error", "RuntimeError"),
        ("error", "SmtpNotConfigured"),
    ]
    assert "database went away" in runs[0].error and "SLUICE_SMTP_URL" in runs[1].error
    assert session.get(Runner, "half-written") is None


def test_a_stopped_runner_is_recorded_as_stopped(
    app: Flask, runtime: RuntimeSettings, session: Session, clock: FixedClock
) -> None:
    session.commit()
    app.config[CLOCK_CONFIG_KEY] = clock
    runner = JobRunner(app, runner="short-lived")
    runner.start(paused=True)
    run_recorded(runner.context, housekeeping.JOB_ID, housekeeping.run)
    runner.stop()
    session.expire_all()
    stopped = session.get(Runner, "short-lived")
    assert stopped is not None and stopped.stopped_at == clock.now() and stopped.schedule == {}
    assert not runner.scheduler.running


def test_stop_waits_for_the_run_under_way_then_records_the_stop(
    app: Flask, runtime: RuntimeSettings, session: Session, clock: FixedClock
) -> None:
    session.commit()
    app.config[CLOCK_CONFIG_KEY] = clock
    release = threading.Event()

    def slow(context: JobContext, session: Session, clock: Clock) -> Outcome:
        release.wait(timeout=30)
        return Outcome("done")

    runner = JobRunner(app, runner="stopping")
    runner.start(paused=True)
    run = threading.Thread(target=runner.run, args=(JobSpec("slow", slow, "", lambda r: 60),))
    run.start()
    wait_until(
        lambda: bool(session.scalar(select(JobRun.id).where(JobRun.job_id == "slow"))),
        what="the run is recorded",
        timeout=30,
        interval=0.01,
    )
    stopper = threading.Thread(target=runner.stop)
    stopper.start()
    wait_until(
        lambda: not runner.scheduler.running, what="the scheduler stops", timeout=30, interval=0.01
    )
    assert stopper.is_alive()  # waiting for the run
    release.set()  # its end is a heartbeat, which reads the schedule
    stopper.join(timeout=30)
    run.join(timeout=30)

    assert not stopper.is_alive() and not run.is_alive()
    session.expire_all()
    assert session.scalars(select(JobRun.outcome)).all() == [JobRunOutcome.OK]
    stopped = session.get(Runner, "stopping")
    assert stopped is not None and stopped.stopped_at is not None


def test_a_new_runners_jobs_beating_at_once_make_one_runner_row(
    session: Session, clock: FixedClock
) -> None:
    """A runner's jobs all start together, and each run's start is a beat."""
    engine = session.get_bind()
    start = threading.Barrier(3)
    failures: list[BaseException] = []

    def beat() -> None:
        own = Session(engine)
        try:
            start.wait()
            job_runs.heartbeat(own, "new-runner", clock, {})
            own.commit()
        except BaseException as error:
            failures.append(error)
        finally:
            own.close()

    threads = [threading.Thread(target=beat) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first_beat = clock.now()
    clock.advance(timedelta(seconds=30))
    job_runs.heartbeat(session, "new-runner", clock, {})
    session.commit()

    assert failures == []
    [runner] = session.scalars(select(Runner)).all()
    assert (runner.started_at, runner.heartbeat_at) == (first_beat, clock.now())
