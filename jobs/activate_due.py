"""``activate-due``: start the pending mass emails whose start time came."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.clock import Clock
from app.services.queue_build import activate_due
from jobs.recording import JobContext, Outcome

JOB_ID = "activate-due"


def run(context: JobContext, session: Session, clock: Clock) -> Outcome:
    started = activate_due(session, clock)
    if not started:
        return Outcome("nothing due")
    return Outcome(f"started mass email(s) {', '.join(map(str, started))}")
