"""``bounce-poll``: read the bounce mailbox once (``app.services.bounce_poll``).

Inactive while no mailbox is configured (``SLUICE_IMAP_URL``): each run is
recorded with that reason and touches nothing. A poll that ended early (the
server unreachable, a refused login) is recorded as an error with the
server's words; the next run tries again from the stored checkpoint.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app import app_settings
from app.clock import Clock
from app.context import app_bounce_handler
from app.services.bounce_poll import poll_bounces
from bounce.mailbox import MailboxConfigError, parse_imap_url
from jobs.recording import JobContext, Outcome

JOB_ID = "bounce-poll"
INACTIVE = "inactive: no bounce mailbox configured (set SLUICE_IMAP_URL)"


def run(context: JobContext, session: Session, clock: Clock) -> Outcome:
    imap_url = app_settings(context.app).imap_url
    if not imap_url:
        return Outcome(INACTIVE)
    try:
        parse_imap_url(imap_url)  # a bad URL is told before anything else
        result = poll_bounces(
            session,
            imap_url,
            app_bounce_handler(context.app, clock),
            clock=clock,
            runner=context.runner_id,
        )
    except MailboxConfigError as error:
        return Outcome("", f"SLUICE_IMAP_URL: {error}")
    return Outcome(result.describe(), result.error)
