"""``dispatch``: one dispatcher tick (``app.services.dispatch_send``)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.clock import Clock
from app.context import app_message_config, app_transport_factory
from app.services.dispatch_send import dispatch_tick
from app.services.runtime_settings import get_runtime_settings
from jobs.recording import JobContext, Outcome

JOB_ID = "dispatch"


def run(context: JobContext, session: Session, clock: Clock) -> Outcome:
    result = dispatch_tick(
        session,
        app_transport_factory(context.app),
        clock,
        get_runtime_settings(session),
        context.runner_id,
        config=app_message_config(context.app),
    )
    problem = ""
    if result.paused:
        problem = (
            f"paused mass email(s) {', '.join(map(str, result.paused))}: "
            "see their campaign log, fix the cause and resume"
        )
    return Outcome(result.describe(), problem)
