"""What the dashboard shows: the hourly quota used, and the mass emails
being sent with their progress and estimated end
(``app.services.dispatch_status``).

Rules:

- **Quota used** is the ledger's count over the last 60 minutes
  (``app.services.quota``), the same number the dispatcher obeys.
- **Being sent** means ``in_progress`` or ``paused`` (a paused one shows
  its progress, without an estimate), oldest start first, at most
  ``MAX_SHOWN`` of them (the page says how many more there are).
- **Recent results**: the last ``RECENT_SHOWN`` complete mass emails
  (latest start first) with their open, click and bounce rates, counted
  as the results page counts them (``app.services.results``) in one
  ``GROUP BY`` for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import MassEmail, MassEmailStatus, QueueItem, QueueItemStatus
from app.services.dispatch_status import Progress, mass_email_progress
from app.services.quota import QUOTA_WINDOW, claims_since, quota_frees_at
from app.services.runtime_settings import RuntimeSettings

MAX_SHOWN = 20
# Each one's rates cost a pass over its queue items: a glance, not a report.
RECENT_SHOWN = 3
SENDING_STATUSES = (MassEmailStatus.IN_PROGRESS, MassEmailStatus.PAUSED)


@dataclass(frozen=True)
class RecentResult:
    """A complete mass email's reach (the results page's definitions)."""

    mass_email_id: int
    name: str
    start_at: datetime | None
    recipients: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    bounced: int

    @property
    def open_rate(self) -> float:
        return self.opened / self.delivered if self.delivered else 0.0

    @property
    def click_rate(self) -> float:
        return self.clicked / self.delivered if self.delivered else 0.0

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Dashboard:
    quota_used: int  # messages claimed in the last 60 minutes
    max_per_hour: int
    quota_frees_at: datetime | None  # when a full window next has room
    sending: list[Progress]
    more_sending: int  # beyond MAX_SHOWN
    recent: list[RecentResult]

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
        recent=recent_results(session),
    )


def recent_results(session: Session, limit: int = RECENT_SHOWN) -> list[RecentResult]:
    """The last ``limit`` complete mass emails with their rates (see the
    module's rules)."""
    recent = session.execute(
        select(MassEmail.id, MassEmail.name, MassEmail.start_at)
        .where(MassEmail.status == MassEmailStatus.COMPLETE, MassEmail.deleted_at.is_(None))
        .order_by(MassEmail.start_at.desc(), MassEmail.id.desc())
        .limit(limit)
    ).all()
    if not recent:
        return []
    bounced = QueueItem.status == QueueItemStatus.BOUNCED
    counts = {
        row[0]: row[1:]
        for row in session.execute(
            select(
                QueueItem.mass_email_id,
                func.count(),
                # Sent: accepted by the relay, or refused with a bounce.
                func.count(case((bounced, 1), (QueueItem.sent_at.is_not(None), 1))),
                func.count(QueueItem.opened_at),
                func.count(QueueItem.clicked_at),
                func.count(case((bounced, 1))),
            )
            .where(QueueItem.mass_email_id.in_([row.id for row in recent]))
            .group_by(QueueItem.mass_email_id)
        )
    }
    results = []
    for id_, name, start_at in recent:
        total, sent, opened, clicked, bounces = counts.get(id_, (0, 0, 0, 0, 0))
        results.append(
            RecentResult(
                id_, name, start_at, total, sent, max(0, sent - bounces), opened, clicked, bounces
            )
        )
    return results
