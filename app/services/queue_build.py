"""Queue building: a mass email's audience resolved once into queue items.

When a mass email's start time comes, ``build_queue`` turns the audience of
its campaign (``app.services.audience.audience_select`` over the target
lists minus the excluding lists) into one queue item per contact, with one
set-based ``INSERT … SELECT``: no row passes through Python, so memory stays
flat whatever the audience's size. The rules:

1. The status each item starts with comes from its audience category, in
   the SQL (a ``CASE``; this is the one place a queue-item status is set
   outside ``app.services.queue_status``):

   =============== ============= ========================================
   category        status        ``skip_reason``
   =============== ============= ========================================
   recipient       queued        (empty)
   opted_out       unsubscribed  opted out of mass email
   invalid_address error         invalid address: <the contact's reason>
   no_address      error         no email address
   =============== ============= ========================================

   A recipient whose address is on the suppression list
   (``app.services.suppression``) becomes ``dropped`` ("suppressed
   address"), checked before any other recipient rule.
2. Once: the queue is built a single time per mass email, stamped by
   ``queue_built_at``; a second call inserts nothing, even when the lists
   changed since. The unique constraint on (mass email, contact) with
   ``ON CONFLICT DO NOTHING`` makes even two racing builds add each contact
   once.
3. Only a mass email that left draft (its content snapshot taken) and is
   not deleted can be built. Building moves it from ``pending`` to
   ``in_progress`` through ``mass_email_status.transition``, which refuses a
   start time still to come.
4. Each item gets its recipient's domain group for pacing
   (``domain_group_sql``, the SQL form of ``domain_groups.domain_group``),
   in the same statement, from the domain computed once per row.
5. ``activate_due`` is the dispatcher's entry point: every due pending mass
   email is built and started, each in its own transaction, under a row
   lock that other runners skip (PostgreSQL ``FOR UPDATE SKIP LOCKED``;
   on SQLite the database's write lock, taken before the mass email is
   read, so a runner that waited never starts it a second time). A mass
   email whose queue cannot be built fails with the reason, rather than
   being retried every tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Integer, case, func, literal, select, true
from sqlalchemy.orm import Session

from app.clock import Clock
from app.database import begin_sqlite_write
from app.models import Contact, MassEmail, MassEmailStatus, QueueItem, QueueItemStatus
from app.models.base import UTCDateTime
from app.services.audience import AudienceCategory, audience_select
from app.services.bulk_sql import insert_ignoring_conflicts
from app.services.domain_groups import domain_group_sql, email_domain_sql
from app.services.mass_email_status import transition
from app.services.suppression import suppressed_contact

S = QueueItemStatus
C = AudienceCategory

OPTED_OUT_REASON = "opted out of mass email"
NO_ADDRESS_REASON = "no email address"
INVALID_ADDRESS_REASON = "invalid address"
SUPPRESSED_REASON = "suppressed address"


class QueueBuildError(ValueError):
    """The mass email's queue cannot be built; the message says why."""


@dataclass(frozen=True)
class QueueBuildResult:
    """A mass email's queue after ``build_queue``: how many items this call
    inserted (0 when the queue existed) and how many items the queue holds
    per status."""

    mass_email_id: int
    inserted: int
    counts: Mapping[QueueItemStatus, int] = field(default_factory=dict)

    def count(self, status: QueueItemStatus) -> int:
        return self.counts.get(status, 0)

    @property
    def queued(self) -> int:
        return self.count(S.QUEUED)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def suppressed_address(contact_id: ColumnElement[int]) -> ColumnElement[bool]:
    """The condition under which an audience row's address is on the
    suppression list: a correlated ``EXISTS`` by the contact's case-folded
    address (``suppression.suppressed_contact``). A recipient meeting it is
    inserted as ``dropped``."""
    return suppressed_contact(contact_id)


def build_queue(session: Session, mass_email: MassEmail, clock: Clock) -> QueueBuildResult:
    """Build ``mass_email``'s queue once and start it (see the module's
    rules). Locks the mass email's row; flushes, the caller commits. Raises
    ``QueueBuildError`` for a draft, deleted or snapshot-less mass email and
    ``IllegalTransition`` for one not pending or not due yet."""
    session.refresh(mass_email, with_for_update=True)
    _require_snapshot(mass_email)
    if mass_email.queue_built_at is None and mass_email.status != MassEmailStatus.PENDING:
        raise QueueBuildError(
            f"only a pending mass email's queue is built; mass email {mass_email.id}"
            f" is {mass_email.status}"
        )
    if mass_email.status == MassEmailStatus.PENDING:
        transition(mass_email, MassEmailStatus.IN_PROGRESS, clock)
    inserted = 0
    if mass_email.queue_built_at is None:
        inserted = _insert_items(session, mass_email, clock)
        mass_email.queue_built_at = clock.now()
    session.flush()
    return QueueBuildResult(mass_email.id, inserted, status_counts(session, mass_email.id))


def _require_snapshot(mass_email: MassEmail) -> None:
    if mass_email.deleted_at is not None:
        raise QueueBuildError(f"mass email {mass_email.id} is deleted")
    if mass_email.status == MassEmailStatus.DRAFT or mass_email.subject is None:
        raise QueueBuildError(
            f"mass email {mass_email.id} has no content snapshot: schedule it first"
        )


def _insert_items(session: Session, mass_email: MassEmail, clock: Clock) -> int:
    """The one ``INSERT … SELECT``; returns the number of rows inserted."""
    campaign = mass_email.campaign
    selected = audience_select(
        [target.id for target in campaign.target_lists],
        [excluding.id for excluding in campaign.excluding_lists],
    ).subquery("selected")
    # Each row's domain, computed once: PostgreSQL does not inline a
    # subquery with an OFFSET, and an inlined one would compute it again at
    # every use in the domain group's CASE (~5 s more per million items).
    audience = (
        select(selected, email_domain_sql(selected.c.email).label("domain"))
        .offset(0)
        .subquery("audience")
    )
    columns: dict[str, ColumnElement[Any]] = {
        "mass_email_id": literal(mass_email.id, Integer),
        "contact_id": audience.c.contact_id,
        "email": func.coalesce(audience.c.email, ""),
        "status": _initial_status(audience.c.category, audience.c.contact_id),
        "skip_reason": _skip_reason(audience.c.category, audience.c.contact_id),
        "created_at": literal(clock.now(), UTCDateTime()),
        "domain_group": domain_group_sql(audience.c.domain),
    }
    # SQLite needs a WHERE before ON CONFLICT (see insert_ignoring_conflicts).
    rows = select(*columns.values()).where(true())
    statement = (
        insert_ignoring_conflicts(session, QueueItem)
        .from_select(list(columns), rows)
        # rowcount of an INSERT is only kept on request (psycopg resets it).
        .execution_options(preserve_rowcount=True)
    )
    result = session.execute(statement)
    if not isinstance(result, CursorResult):  # narrows the type: DML yields one
        raise TypeError(f"expected a CursorResult, got {type(result).__name__}")
    return result.rowcount


def _initial_status(
    category: ColumnElement[str], contact_id: ColumnElement[int]
) -> ColumnElement[str]:
    # Rule 1; a suppressed recipient is dropped (checked first among recipients).
    return case(
        ((category == C.RECIPIENT.value) & suppressed_address(contact_id), S.DROPPED.value),
        (category == C.RECIPIENT.value, S.QUEUED.value),
        (category == C.OPTED_OUT.value, S.UNSUBSCRIBED.value),
        else_=literal(S.ERROR.value),
    )


def _skip_reason(
    category: ColumnElement[str], contact_id: ColumnElement[int]
) -> ColumnElement[str]:
    return case(
        ((category == C.RECIPIENT.value) & suppressed_address(contact_id), SUPPRESSED_REASON),
        (category == C.RECIPIENT.value, ""),
        (category == C.OPTED_OUT.value, OPTED_OUT_REASON),
        (category == C.NO_ADDRESS.value, NO_ADDRESS_REASON),
        (category == C.INVALID_ADDRESS.value, _invalid_address_reason(contact_id)),
        else_=literal(""),
    )


def _invalid_address_reason(contact_id: ColumnElement[int]) -> ColumnElement[str]:
    """The skip reason of an invalid address, ``invalid address: <the
    contact's email_status_reason>`` (just ``invalid address`` without
    one), read by a correlated subquery that runs for invalid rows only."""
    reason = (
        select(func.coalesce(Contact.email_status_reason, ""))
        .where(Contact.id == contact_id)
        .scalar_subquery()
    )
    return case(
        (reason == "", literal(INVALID_ADDRESS_REASON)),
        else_=literal(f"{INVALID_ADDRESS_REASON}: ") + reason,
    )


def status_counts(session: Session, mass_email_id: int) -> dict[QueueItemStatus, int]:
    """Queue items of the mass email per status (one ``GROUP BY``)."""
    rows = session.execute(
        select(QueueItem.status, func.count())
        .where(QueueItem.mass_email_id == mass_email_id)
        .group_by(QueueItem.status)
    ).all()
    return {QueueItemStatus(status): count for status, count in rows}


def due_mass_email_ids(session: Session, clock: Clock) -> list[int]:
    """Pending, not deleted mass emails whose start time has come, oldest
    start first."""
    return list(
        session.scalars(
            select(MassEmail.id).where(*_due(clock)).order_by(MassEmail.start_at, MassEmail.id)
        )
    )


def _due(clock: Clock) -> tuple[ColumnElement[bool], ...]:
    return (
        MassEmail.status == MassEmailStatus.PENDING,
        MassEmail.deleted_at.is_(None),
        MassEmail.start_at <= clock.now(),
    )


def activate_due(session: Session, clock: Clock) -> list[int]:
    """Build the queue of every due pending mass email and move it to
    ``in_progress``, each in its own committed transaction (the session's
    open transaction is committed first); returns the ids started. A mass
    email another runner holds is skipped (it is that runner's to start);
    one whose queue cannot be built fails with the reason (rule 5)."""
    session.commit()
    started = []
    for mass_email_id in due_mass_email_ids(session, clock):
        if _activate_one(session, mass_email_id, clock):
            started.append(mass_email_id)
    return started


def _activate_one(session: Session, mass_email_id: int, clock: Clock) -> bool:
    _begin_activation(session)
    mass_email = _lock_if_due(session, mass_email_id, clock)
    if mass_email is None:
        session.rollback()
        return False
    try:
        build_queue(session, mass_email, clock)
    except QueueBuildError as error:
        session.rollback()
        _fail(session, mass_email_id, str(error), clock)
        return False
    except BaseException:
        session.rollback()
        raise
    session.commit()
    return True


def _begin_activation(session: Session) -> None:
    """Start the activation's own transaction. On SQLite it takes the
    database's write lock first (``BEGIN IMMEDIATE``): SQLite has no row
    locks (``FOR UPDATE`` is left out there), so without it a runner that
    read "pending" while another was building would wait for that build's
    commit and then start the mass email a second time from its stale read.
    PostgreSQL needs nothing more than the row lock of ``_lock_if_due``."""
    session.commit()
    if session.get_bind().dialect.name == "sqlite":
        begin_sqlite_write(session)


def _lock_if_due(session: Session, mass_email_id: int, clock: Clock) -> MassEmail | None:
    """The mass email under a row lock, if it is still due and no other
    runner holds it (PostgreSQL; SQLite has one writer at a time)."""
    return session.scalar(
        select(MassEmail)
        .where(MassEmail.id == mass_email_id, *_due(clock))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


def _fail(session: Session, mass_email_id: int, reason: str, clock: Clock) -> None:
    _begin_activation(session)
    mass_email = _lock_if_due(session, mass_email_id, clock)
    if mass_email is not None:
        transition(mass_email, MassEmailStatus.FAILED, clock, reason=reason)
    session.commit()
