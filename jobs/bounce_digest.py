"""``bounce-digest``: send the due bounce digests to the sender profiles'
points of contact (``app.services.bounce_digest``). Looks every hour; each
profile gets at most one digest a day. Inactive while no SMTP relay is
configured."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app import app_settings
from app.clock import Clock
from app.context import SmtpNotConfigured, app_transport_factory
from app.services.bounce_digest import send_digests
from app.services.runtime_settings import get_runtime_settings
from jobs.recording import JobContext, Outcome

JOB_ID = "bounce-digest"
INTERVAL_SECONDS = 3600


def run(context: JobContext, session: Session, clock: Clock) -> Outcome:
    try:
        transport_factory = app_transport_factory(context.app)
    except SmtpNotConfigured as error:
        return Outcome(f"inactive: {error}")
    result = send_digests(
        session,
        transport_factory,
        clock,
        site_url=get_runtime_settings(session).site_url,
        bounce_address=app_settings(context.app).bounce_address,
    )
    problem = "; ".join(result.failed)
    return Outcome(result.describe(), f"digests not sent: {problem}" if problem else "")
