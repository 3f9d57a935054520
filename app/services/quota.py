"""The global hourly quota: a sliding 60-minute window counted from the
database.

Rules (SPEC §4):

- ``max_per_hour`` bounds the messages submitted in **any** 60-minute
  window, across all mass emails and all runner processes together.
- The ledger is ``send_attempts``: a claim writes one row per claimed item,
  stamped ``claimed_at``, in the same transaction as the claim itself
  (``app.services.dispatch.claim_batch``), and claims are serialised (an
  advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). Each claim
  takes at most the quota left at its own time, so the rows of every window
  ``(t - 60 min, t]`` never exceed ``max_per_hour``.
- A claim counts once per message handed to SMTP; a retry is a new claim
  and counts again. A claim released unsent (the tick ended early) keeps
  its row: the quota only ever errs on the safe side.
- Send Test is outside the quota: it writes no row.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import SendAttempt

QUOTA_WINDOW = timedelta(minutes=60)


def claims_since(session: Session, since: datetime) -> int:
    """Ledger rows claimed strictly after ``since``."""
    count = session.scalar(
        select(func.count()).select_from(SendAttempt).where(SendAttempt.claimed_at > since)
    )
    return int(count or 0)


def hourly_quota_left(session: Session, clock: Clock, max_per_hour: int) -> int:
    """How many messages may be claimed now: ``max_per_hour`` minus the
    ledger rows claimed in the last 60 minutes (``claimed_at > now - 60
    min``), never below zero. Counts every mass email and every runner."""
    used = claims_since(session, clock.now() - QUOTA_WINDOW)
    return max(0, max_per_hour - used)


def quota_frees_at(session: Session, clock: Clock, max_per_hour: int) -> datetime | None:
    """When the next claim slot opens, for a window that is full: the
    moment the oldest row that keeps it full leaves the window. None while
    there is quota left now."""
    now = clock.now()
    window = select(SendAttempt.claimed_at).where(SendAttempt.claimed_at > now - QUOTA_WINDOW)
    used = claims_since(session, now - QUOTA_WINDOW)
    if used < max_per_hour:
        return None
    # With ``used`` rows and room for ``max_per_hour``, a slot opens when the
    # (used - max_per_hour + 1)-th oldest row leaves.
    leaving = session.scalar(
        window.order_by(SendAttempt.claimed_at).offset(used - max_per_hour).limit(1)
    )
    return None if leaving is None else leaving + QUOTA_WINDOW
