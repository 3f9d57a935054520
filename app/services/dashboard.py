"""What the dashboard shows: the hourly quota used, and the mass emails
being sent with their progress and estimated end
(``app.services.dispatch_status``).

Rules:

- **Quota used** is the ledger's count over the last 60 minutes
  (``app.services.quota``), the same number the dispatcher obeys.
- **Being sent** means ``in_progress`` or ``paused`` (a paused one shows
  its progress, without an estimate), oldest start first, at most
  ``MAX_SHOWN`` of them (the page says how many more there are).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import MassEmail, MassEmailStatus
from app.services.dispatch_status import Progress, mass_email_progress
from app.services.quota import QUOTA_WINDOW, claims_since, quota_frees_at
from app.services.runtime_settings import RuntimeSettings

MAX_SHOWN = 20
SENDING_STATUSES = (MassEmailStatus.IN_PROGRESS, MassEmailStatus.PAUSED)


@dataclass(frozen=True)
class Dashboard:
    quota_used: int  # messages claimed in the last 60 minutes
    max_per_hour: int
    quota_frees_at: datetime | None  # when a full window next has room
    sending: list[Progress]
    more_sending: int  # beyond MAX_SHOWN

    @property
    def quota_percent(self) -> int:
        return min(100, round(100 * self.quota_used / self.max_per_hour))


def dashboard(session: Session, clock: Clock, runtime: RuntimeSettings) -> Dashboard:
    """The dashboard's figures (see the module's rules)."""
    being_sent = (MassEmail.status.in_(SENDING_STATUSES), MassEmail.deleted_at.is_(None))
    ids = list(
        session.scalars(
            select(MassEmail.id)
            .where(*being_sent)
            .order_by(MassEmail.start_at, MassEmail.id)
            .limit(MAX_SHOWN)
        )
    )
    total = int(session.scalar(select(func.count()).select_from(MassEmail).where(*being_sent)) or 0)
    return Dashboard(
        quota_used=claims_since(session, clock.now() - QUOTA_WINDOW),
        max_per_hour=runtime.max_per_hour,
        quota_frees_at=quota_frees_at(session, clock, runtime.max_per_hour),
        sending=[mass_email_progress(session, id_, clock, runtime) for id_ in ids],
        more_sending=max(0, total - len(ids)),
    )
