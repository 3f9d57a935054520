"""``housekeeping``: expired claim leases → interrupted, runs of dead
runners closed, old runs pruned, and changed intervals applied to this
runner's schedule. Its runs are also the heartbeat of an otherwise
idle runner (``jobs.recording``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.clock import Clock
from app.services import job_runs
from app.services.dispatch import housekeeping
from app.services.runtime_settings import get_runtime_settings
from jobs.recording import JobContext, Outcome

JOB_ID = "housekeeping"


def run(context: JobContext, session: Session, clock: Clock) -> Outcome:
    rescheduled = context.scheduling.apply_intervals(get_runtime_settings(session))
    interrupted = housekeeping(session, clock)
    abandoned = job_runs.close_abandoned_runs(session, clock)
    pruned = job_runs.prune(session, clock)
    session.commit()
    parts = [f"{interrupted} lease(s) expired → interrupted"]
    if abandoned:
        parts.append(f"{abandoned} run(s) of stopped runners closed")
    if pruned:
        parts.append(f"{pruned} old run record(s) deleted")
    if rescheduled:
        parts.append(f"new interval applied to {', '.join(rescheduled)}")
    return Outcome("; ".join(parts))
