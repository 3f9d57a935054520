"""``contact-import``: import the CSV files uploaded in the browser that
were too big to import while the request waited
(``app.services.background_import``).

One import at a time in this runner (the job never overlaps itself), each
under a lease so two runners never import the same file; a run imports
every waiting import, oldest first, and resumes one whose runner died once
its lease ran out. A run with nothing waiting touches nothing but
left-over files.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.orm import Session

from app import app_settings
from app.clock import Clock
from app.services.addresses import own_sending_addresses
from app.services.background_import import ImportSettings, imports_folder, run_pending_imports
from jobs.recording import JobContext, Outcome

JOB_ID = "contact-import"
# A waiting import starts within this many seconds.
INTERVAL_SECONDS: Final = 10


def run(context: JobContext, session: Session, clock: Clock) -> Outcome:
    settings = ImportSettings(
        folder=imports_folder(context.app.instance_path),
        runner=context.runner_id,
        clock=clock,
        own_addresses=own_sending_addresses(session, app_settings(context.app).bounce_address),
    )
    summary = run_pending_imports(session, settings)
    problem = "; ".join(f"import {record.id}: {record.error}" for record in summary.failed)
    return Outcome(summary.describe(), problem)
