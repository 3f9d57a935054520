"""A mass email's progress: its queue items per status and an estimate of
when it will be done under the current quota (``sluice status``).

The estimate's rules (it is an estimate, and says so):

- Only a mass email ``in_progress`` with items still ``queued`` or
  ``sending`` has one; a paused mass email has none (nothing is sent).
- The pace of the whole dispatcher is ``min(max_per_hour, batch_size x
  ticks per hour)``; the portions are shared round-robin, so a mass email
  gets an equal part of it with every other mass email in progress that
  still has queued items.
- Sending starts now, or when the quota window next frees a slot if it is
  full; retries, send-time skips and other runners' ticks are not foreseen,
  nor are per-domain caps and throttles.

Per-domain pacing is shown beside it (``paces``): each domain group's
claims of the last 60 minutes, its caps, and a throttle in force with the
reply that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import MassEmail, MassEmailStatus, QueueItem, QueueItemStatus
from app.services.dispatch import DispatchError
from app.services.pacing import GroupPace, group_paces
from app.services.quota import hourly_quota_left, quota_frees_at
from app.services.runtime_settings import RuntimeSettings

S = QueueItemStatus


@dataclass(frozen=True)
class Progress:
    mass_email_id: int
    name: str
    status: MassEmailStatus
    counts: dict[QueueItemStatus, int]
    quota_left: int  # in the current 60-minute window, for everyone
    hourly_pace: float  # messages per hour this mass email may expect
    sharing_with: int  # other mass emails in progress with queued items
    eta: datetime | None
    paces: list[GroupPace]  # every domain group, for all mass emails

    @property
    def remaining(self) -> int:
        return self.counts.get(S.QUEUED, 0) + self.counts.get(S.SENDING, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def dispatcher_pace(runtime: RuntimeSettings) -> float:
    """Messages per hour the dispatcher can submit at most."""
    ticks_per_hour = 3600 / runtime.tick_interval_seconds
    return float(min(runtime.max_per_hour, runtime.batch_size * ticks_per_hour))


def mass_email_progress(
    session: Session, mass_email_id: int, clock: Clock, runtime: RuntimeSettings
) -> Progress:
    """The mass email's counts per status and its estimated end (see the
    module's rules). Raises ``DispatchError`` for an unknown mass email."""
    mass_email = session.get(MassEmail, mass_email_id)
    if mass_email is None or mass_email.deleted_at is not None:
        raise DispatchError(f"no mass email with id {mass_email_id}")
    counts = {
        QueueItemStatus(status): count
        for status, count in session.execute(
            select(QueueItem.status, func.count())
            .where(QueueItem.mass_email_id == mass_email_id)
            .group_by(QueueItem.status)
        )
    }
    others = _others_sending(session, mass_email_id)
    pace = dispatcher_pace(runtime) / (others + 1)
    remaining = counts.get(S.QUEUED, 0) + counts.get(S.SENDING, 0)
    eta = None
    if mass_email.status == MassEmailStatus.IN_PROGRESS and remaining:
        start = quota_frees_at(session, clock, runtime.max_per_hour) or clock.now()
        eta = start + timedelta(hours=remaining / pace)
    return Progress(
        mass_email_id=mass_email_id,
        name=mass_email.name,
        status=MassEmailStatus(mass_email.status),
        counts=counts,
        quota_left=hourly_quota_left(session, clock, runtime.max_per_hour),
        hourly_pace=pace,
        sharing_with=others,
        eta=eta,
        paces=group_paces(session, clock, runtime),
    )


def _others_sending(session: Session, mass_email_id: int) -> int:
    queued = exists().where(QueueItem.mass_email_id == MassEmail.id, QueueItem.status == S.QUEUED)
    count = session.scalar(
        select(func.count())
        .select_from(MassEmail)
        .where(
            MassEmail.status == MassEmailStatus.IN_PROGRESS,
            MassEmail.deleted_at.is_(None),
            MassEmail.id != mass_email_id,
            queued,
        )
    )
    return int(count or 0)
