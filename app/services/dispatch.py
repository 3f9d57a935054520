"""The dispatcher: claim a portion of the queue under the global quota, hand
it to SMTP, commit each result, and keep the queue honest.

Rules (SPEC §4, DESIGN "never lose, never duplicate"):

- **Claim before the conversation.** ``claim_batch`` moves items from
  ``queued`` to ``sending`` (with the runner's id, a lease and one more
  attempt) and writes their ``send_attempts`` rows — the quota ledger — in
  one committed transaction, before any SMTP conversation starts.
- **One claim at a time.** Quota check and claim are serialised across
  runners: on PostgreSQL by ``pg_advisory_xact_lock(CLAIM_LOCK_KEY)`` held
  to the claim's commit, the rows taken with ``FOR UPDATE SKIP LOCKED``; on
  SQLite by ``BEGIN IMMEDIATE`` (the database's write lock, taken before
  the quota is read). So no 60-minute window ever holds more than
  ``max_per_hour`` claims (``app.services.quota``).
- **Portion size.** A claim takes ``min(batch_size, quota left)`` items,
  only of mass emails ``in_progress`` and not deleted, only items due
  (``next_attempt_at`` empty or past). Pause or cancel therefore stops
  further portions at once, and resume continues where it stopped.
- **Fairness.** The portion is split round-robin between the mass emails
  with due items, oldest start first: each gets ``ceil(n / k)``, then
  whatever is left goes to those that have more, in the same order. One
  huge campaign cannot starve a small one. (With fewer items than mass
  emails the oldest go first.)
- **Per-domain pacing** (``app.services.pacing``). Under the same lock, the
  claim reads each domain group's allowance (0 while throttled, what its
  hourly cap leaves, or no limit of its own) and never takes more of a
  group than that. A group with no allowance is passed over, not waited
  for: within a mass email the claim takes the due items in id order,
  skipping those of groups that have run out, so a capped gmail leaves the
  portion to the other groups' items. The share of each mass email is
  computed among those with due items of a group that may still send.
- **Leases.** Housekeeping turns items still ``sending`` after their lease
  into ``interrupted``: their runner died or stalled, so whether their
  message left is in doubt. They are never resent automatically;
  ``retry_interrupted`` puts them back after a person decides.
- **Completion.** A mass email ``in_progress`` with no ``queued`` or
  ``sending`` item left becomes ``complete``. Interrupted items do not
  hold it open, so a person retries them while it is still in progress or
  paused; afterwards they stay as they are.

Sending and results: ``app.services.dispatch_send``; the tick that ties it
together: ``dispatch_tick`` there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.types import TypeEngine

from app.clock import Clock
from app.database import begin_sqlite_write
from app.models import (
    DomainGroup,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
    SendAttempt,
)
from app.models.base import UTCDateTime
from app.services import mass_email_status, queue_status
from app.services.bulk_sql import rows_parameters, rows_table
from app.services.pacing import group_allowances
from app.services.quota import hourly_quota_left
from app.services.runtime_settings import RuntimeSettings

# The advisory lock key of the claim (any constant the application owns;
# this one spells "SLUICE" in ASCII hex).
CLAIM_LOCK_KEY = 0x534C55494345
# SQL statements take id lists in slices of this many (SQLite's limit on
# bound parameters is far above it; the statements stay cacheable).
ID_SLICE = 500


class AttemptOutcome:
    """The ``send_attempts.outcome`` values beyond ``SendOutcome``'s."""

    SKIPPED = "skipped"  # a send-time check refused it; never handed to SMTP
    RELEASED = "released"  # the tick ended before its turn; back to queued
    INTERRUPTED = "interrupted"  # its lease ran out; in doubt


class DispatchError(ValueError):
    """A dispatcher request a person made cannot be done; says why."""


@dataclass(frozen=True)
class Claim:
    """One claimed queue item and its ledger row."""

    queue_item_id: int
    mass_email_id: int
    contact_id: int | None
    email: str
    attempts: int  # including this one
    attempt_id: int
    runner_id: str
    lease_expires_at: datetime
    domain_group: DomainGroup


# ----------------------------------------------------------------- claim


def claim_batch(
    session: Session, runner_id: str, clock: Clock, runtime: RuntimeSettings
) -> list[Claim]:
    """Claim the next portion for ``runner_id`` and commit (see the module's
    rules). Runs its own transaction, so whatever the session holds is
    committed first. Returns the claims, fewer when the quota or the queue
    runs short."""
    session.commit()
    try:
        _begin_claim_transaction(session)
        claims = _claim(session, runner_id, clock, runtime)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return claims


def _begin_claim_transaction(session: Session) -> None:
    """Take the claim's lock before reading the quota."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(CLAIM_LOCK_KEY)))
    elif dialect == "sqlite":
        begin_sqlite_write(session)
    else:
        raise NotImplementedError(f"claims support PostgreSQL and SQLite, not {dialect}")


def _claim(session: Session, runner_id: str, clock: Clock, runtime: RuntimeSettings) -> list[Claim]:
    now = clock.now()
    wanted = min(runtime.batch_size, hourly_quota_left(session, clock, runtime.max_per_hour))
    if wanted <= 0:
        return []
    allowances = group_allowances(session, now, runtime)
    if not _open_groups(allowances):
        return []
    mass_email_ids = mass_emails_with_due_items(session, now, _open_groups(allowances))
    if not mass_email_ids:
        return []
    lease_expires_at = now + timedelta(seconds=runtime.lease_seconds)

    def take(mass_email_id: int, limit: int) -> list[ClaimedRow]:
        candidates = _candidates(mass_email_id, now, limit, allowances)
        if candidates is None:
            return []
        rows = queue_status.claim_queued(
            session, candidates, runner_id=runner_id, lease_expires_at=lease_expires_at
        )
        taken = [ClaimedRow(*row) for row in rows]
        for row in taken:
            allowance = allowances[row.domain_group]
            if allowance is not None:
                allowances[row.domain_group] = allowance - 1
        return taken

    claimed: list[ClaimedRow] = []
    share = math.ceil(wanted / len(mass_email_ids))
    more_left = []
    for mass_email_id in mass_email_ids:
        limit = min(share, wanted - len(claimed))
        if limit <= 0:
            break
        taken = take(mass_email_id, limit)
        claimed += taken
        if len(taken) == limit:
            more_left.append(mass_email_id)
    for mass_email_id in more_left:
        limit = wanted - len(claimed)
        if limit <= 0:
            break
        claimed += take(mass_email_id, limit)
    return _record_attempts(session, claimed, runner_id, now, lease_expires_at)


@dataclass(frozen=True)
class ClaimedRow:
    """What ``queue_status.claim_queued`` returns for one item."""

    id: int
    mass_email_id: int
    contact_id: int | None
    email: str
    attempts: int
    domain_group: DomainGroup


def _open_groups(allowances: dict[DomainGroup, int | None]) -> list[DomainGroup]:
    """The groups a claim may still take items of."""
    return [group for group, left in allowances.items() if left is None or left > 0]


def _candidates(
    mass_email_id: int, now: datetime, limit: int, allowances: dict[DomainGroup, int | None]
) -> Select[int] | None:
    """The ids of the mass email's next ``limit`` due items, in id order,
    taking no more of a group than its allowance: the first items of each
    open group (one range of its ``ix_queue_items_claimable_<group>``
    each), merged by id. Within a group the first ``allowance`` items are
    exactly those a walk in id order would take, so the merge is that walk.
    None when no group is open."""
    per_group = [
        select(QueueItem.id)
        .where(*_due(mass_email_id, now), _of_group(group))
        .order_by(QueueItem.id)
        .limit(limit if left is None else min(limit, left))
        # PostgreSQL: skip rows another transaction holds (SQLite has one
        # writer and no FOR UPDATE; SQLAlchemy leaves it out there).
        .with_for_update(skip_locked=True)
        .subquery()
        for group, left in allowances.items()
        if left is None or left > 0
    ]
    if not per_group:
        return None
    merged = union_all(*(select(part.c.id) for part in per_group)).subquery("candidates")
    return select(merged.c.id).order_by(merged.c.id).limit(limit)


def mass_emails_with_due_items(
    session: Session, now: datetime, groups: Collection[DomainGroup] | None = None
) -> list[int]:
    """Mass emails that may send now and have a due item (of one of
    ``groups``, when given), oldest start first."""
    due: ColumnElement[bool]
    if groups is None or set(groups) == set(DomainGroup):
        due = exists().where(*_due(MassEmail.id, now))
    elif groups:
        # One EXISTS per group, each answered from its group's index.
        due = or_(*(exists().where(*_due(MassEmail.id, now), _of_group(group)) for group in groups))
    else:
        return []
    return list(
        session.scalars(
            select(MassEmail.id)
            .where(
                MassEmail.status == MassEmailStatus.IN_PROGRESS,
                MassEmail.deleted_at.is_(None),
                due,
            )
            .order_by(MassEmail.start_at, MassEmail.id)
        )
    )


def _due(
    mass_email_id: int | ColumnElement[int] | InstrumentedAttribute[int], now: datetime
) -> list[ColumnElement[bool]]:
    """The conditions of a mass email's queued item that is due now."""
    return [
        QueueItem.mass_email_id == mass_email_id,
        QueueItem.status == _inline(QueueItemStatus.QUEUED),
        or_(QueueItem.next_attempt_at.is_(None), QueueItem.next_attempt_at <= now),
    ]


def _of_group(group: DomainGroup) -> ColumnElement[bool]:
    """The condition of an item of ``group``."""
    return QueueItem.domain_group == _inline(group)


def _inline(value: str) -> ColumnElement[str]:
    """``value`` (one of our own constants) written into the SQL, not bound:
    a planner can only use a partial index (``WHERE status = 'queued' AND
    domain_group = 'gmail'``) when the query's condition names the same
    values — PostgreSQL's generic plan of a prepared statement and SQLite
    cannot prove it from a parameter."""
    return literal(str(value), literal_execute=True)


def _record_attempts(
    session: Session,
    claimed: Sequence[ClaimedRow],
    runner_id: str,
    now: datetime,
    lease_expires_at: datetime,
) -> list[Claim]:
    """One ledger row per claimed item, in the claim's transaction: one
    ``INSERT … SELECT`` over the claimed ids (``bulk_sql.rows_table``),
    whatever the portion's size."""
    if not claimed:
        return []
    dialect = session.get_bind().dialect.name
    params = rows_parameters(
        dialect,
        "claimed",
        _CLAIMED_COLUMNS,
        # The item's domain group goes to its ledger row: a group's hourly
        # cap counts its own rows (``app.services.pacing``).
        [(row.id, row.mass_email_id, str(row.domain_group)) for row in claimed],
    )
    params.update(runner_id=runner_id, claimed_at=now)
    rows = session.connection().execute(_record_attempts_statement(dialect), params)
    attempt_ids = {queue_item_id: attempt_id for attempt_id, queue_item_id in rows}
    return [
        Claim(
            queue_item_id=row.id,
            mass_email_id=row.mass_email_id,
            contact_id=row.contact_id,
            email=row.email,
            attempts=row.attempts,
            attempt_id=attempt_ids[row.id],
            runner_id=runner_id,
            lease_expires_at=lease_expires_at,
            domain_group=row.domain_group,
        )
        for row in claimed
    ]


_CLAIMED_COLUMNS: dict[str, TypeEngine[Any]] = {
    "id": Integer(),
    "mass_email_id": Integer(),
    "domain_group": String(),
}


@functools.cache
def _record_attempts_statement(dialect: str) -> ReturningInsert[int, int]:
    """Built once: a portion of thousands of rows as one statement with
    three array parameters, not thousands of bound values."""
    claimed = rows_table(dialect, "claimed", _CLAIMED_COLUMNS)
    return (
        insert(SendAttempt)
        .from_select(
            ["queue_item_id", "mass_email_id", "domain_group", "runner_id", "claimed_at"],
            select(
                claimed.c.id,
                claimed.c.mass_email_id,
                claimed.c.domain_group,
                bindparam("runner_id", type_=String()),
                bindparam("claimed_at", type_=UTCDateTime()),
            ).where(true()),  # SQLite: INSERT … SELECT … RETURNING needs a WHERE
        )
        .returning(SendAttempt.id, SendAttempt.queue_item_id)
    )


# ----------------------------------------------------------------- leases


def _slices(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), ID_SLICE):
        yield ids[start : start + ID_SLICE]


def housekeeping(session: Session, clock: Clock) -> int:
    """Items in ``sending`` whose lease expired become ``interrupted`` and
    their open ledger rows are finished as ``interrupted``; never resent
    automatically. Returns how many. Flushes; the caller commits."""
    now = clock.now()
    interrupted = queue_status.interrupt_expired(session, now)
    for ids in _slices(interrupted):
        session.execute(
            update(SendAttempt)
            .where(SendAttempt.queue_item_id.in_(ids), SendAttempt.finished_at.is_(None))
            .values(finished_at=now, outcome=AttemptOutcome.INTERRUPTED)
        )
    return len(interrupted)


def retry_interrupted(session: Session, mass_email_id: int, clock: Clock) -> int:
    """Put the mass email's ``interrupted`` items back to ``queued``, due
    at once: a person decided that they may be sent (again). Only while the
    mass email can still send (in progress or paused); raises
    ``DispatchError`` otherwise. Returns how many. Flushes; the caller
    commits."""
    mass_email = session.get(MassEmail, mass_email_id, with_for_update=True)
    if mass_email is None or mass_email.deleted_at is not None:
        raise DispatchError(f"no mass email with id {mass_email_id}")
    if mass_email.status not in {MassEmailStatus.IN_PROGRESS, MassEmailStatus.PAUSED}:
        raise DispatchError(
            f"mass email {mass_email_id} is {mass_email.status}: only a mass email in "
            "progress or paused sends its interrupted items again"
        )
    requeued = queue_status.requeue_interrupted(session, mass_email_id)
    session.flush()
    return len(requeued)


# ----------------------------------------------------------------- completion


def complete_finished(session: Session, clock: Clock) -> list[int]:
    """Mass emails ``in_progress`` with no ``queued`` or ``sending`` item
    left become ``complete``; returns their ids. Each is re-read under a row
    lock and checked again before it changes. Flushes; the caller commits."""
    candidates = session.scalars(
        select(MassEmail.id).where(
            MassEmail.status == MassEmailStatus.IN_PROGRESS,
            ~exists().where(*_unfinished(MassEmail.id)),
        )
    ).all()
    completed = []
    for mass_email_id in candidates:
        mass_email = session.get(
            MassEmail, mass_email_id, with_for_update=True, populate_existing=True
        )
        if mass_email is None or mass_email.status != MassEmailStatus.IN_PROGRESS:
            continue
        if session.scalar(select(exists().where(*_unfinished(mass_email_id)))):
            continue
        mass_email_status.transition(mass_email, MassEmailStatus.COMPLETE, clock)
        completed.append(mass_email_id)
    session.flush()
    return completed


def _unfinished(
    mass_email_id: int | ColumnElement[int] | InstrumentedAttribute[int],
) -> list[ColumnElement[bool]]:
    """The conditions of a mass email's item still to be sent or in flight."""
    return [
        QueueItem.mass_email_id == mass_email_id,
        QueueItem.status.in_((QueueItemStatus.QUEUED, QueueItemStatus.SENDING)),
    ]
