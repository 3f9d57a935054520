"""Queue item status: the one place where ``QueueItem.status`` changes.

One exception: the initial status. ``app.services.queue_build.build_queue``
inserts each item with its first status (queued, unsubscribed or error;
dropped once suppression exists) set-based, in the ``INSERT … SELECT`` that
builds the queue; every later change goes through this module.

The table ``ALLOWED`` lists every legal transition. Three kinds:

- Delivery (the dispatcher): queued → sending → sent, a retry back to
  queued, or failed/bounced/interrupted; queued items can be dropped,
  unsubscribed (opted out before their turn) or end in error. A claimed
  item (sending) meets the send-time checks: a contact who opted out since
  the queue was built → unsubscribed, a suppressed address → dropped, an
  invalid address or a message that cannot be built → error.
- A person's retry: interrupted → queued. Nothing in doubt is resent
  without someone's say (DESIGN: never lose, never duplicate).
- A person's resend after correction (SPEC §4): bounced, dropped, error or
  failed → queued, **once** per item. ``transition`` itself refuses a
  second one (``resent_at`` is stamped on the first), whoever asks; the
  other conditions (a corrected, valid address; a mass email that may
  still send) are ``app.services.resend``'s, which is the only caller.
- Engagement "upgrades" after delivery: sent → opened → clicked →
  unsubscribed, plus bounced and spam_report, which can arrive late. An
  upgrade never goes back: an open after a click keeps ``clicked``; a
  second click keeps ``clicked``.

Set-based forms: the dispatcher moves many items at once with one SQL
statement each (``claim_queued``: queued → sending; ``mark_sent``: sending
→ sent for the accepted replies that arrived together; ``interrupt_expired``:
sending → interrupted; ``requeue_interrupted``: interrupted → queued).
Each performs exactly one transition of the table, checks it against the
table, and touches only rows in the transition's source status, so the
rule that this module alone changes statuses stays true in bulk.

Callers that only *might* change a status (engagement events) check with
``allowed`` first, or use ``transition_if_allowed``; ``transition`` itself
refuses an illegal change with ``IllegalTransition``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Row, Select, String, Text, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.types import TypeEngine

from app.clock import Clock
from app.models.base import UTCDateTime
from app.models.pacing import DomainGroup
from app.models.queue import QueueItem, QueueItemStatus
from app.services.bulk_sql import rows_parameters, rows_table

S = QueueItemStatus

ALLOWED: Mapping[QueueItemStatus, frozenset[QueueItemStatus]] = {
    S.QUEUED: frozenset({S.SENDING, S.DROPPED, S.UNSUBSCRIBED, S.ERROR}),
    S.SENDING: frozenset(
        {
            S.SENT,
            S.QUEUED,
            S.FAILED,
            S.BOUNCED,
            S.INTERRUPTED,
            # Send-time checks (see the module's rules).
            S.UNSUBSCRIBED,
            S.DROPPED,
            S.ERROR,
        }
    ),
    S.INTERRUPTED: frozenset({S.QUEUED}),
    S.SENT: frozenset({S.OPENED, S.CLICKED, S.UNSUBSCRIBED, S.BOUNCED, S.SPAM_REPORT}),
    S.OPENED: frozenset({S.CLICKED, S.UNSUBSCRIBED, S.BOUNCED, S.SPAM_REPORT}),
    S.CLICKED: frozenset({S.UNSUBSCRIBED, S.BOUNCED, S.SPAM_REPORT}),
    # Resend after correction, once (see the module's rules).
    S.BOUNCED: frozenset({S.QUEUED}),
    S.UNSUBSCRIBED: frozenset(),
    S.SPAM_REPORT: frozenset(),
    S.DROPPED: frozenset({S.QUEUED}),
    S.ERROR: frozenset({S.QUEUED}),
    S.FAILED: frozenset({S.QUEUED}),
}
# The statuses a person may resend from, once, after correcting the address.
RESEND_FROM = frozenset({S.BOUNCED, S.DROPPED, S.ERROR, S.FAILED})

assert set(ALLOWED) == set(QueueItemStatus), "every status needs a row"


class IllegalTransition(ValueError):
    """A status change the table does not allow; names both states."""

    def __init__(self, current: QueueItemStatus, new: QueueItemStatus, why: str = "") -> None:
        self.current = current
        self.new = new
        message = f"queue item status cannot change from {current} to {new}"
        super().__init__(f"{message}: {why}" if why else message)


def allowed(current: QueueItemStatus, new: QueueItemStatus) -> bool:
    """Whether ``current → new`` is a legal change (staying put is not a change)."""
    return new in ALLOWED[current]


def transition(item: QueueItem, new_status: QueueItemStatus, clock: Clock) -> bool:
    """Change ``item``'s status to ``new_status``.

    Returns False when the item already has that status (nothing to do),
    True when it changed. Entering ``sent`` stamps ``sent_at``; a resend
    (``RESEND_FROM`` → queued) stamps ``resent_at``. Raises
    ``IllegalTransition`` for a change the table refuses and for a second
    resend of the same item.
    """
    current = QueueItemStatus(item.status)
    if current == new_status:
        return False
    if not allowed(current, new_status):
        raise IllegalTransition(current, new_status)
    if current in RESEND_FROM and new_status == S.QUEUED:
        _mark_resent(item, current, clock)
    item.status = new_status
    if new_status == S.SENT:
        item.sent_at = clock.now()
    return True


def transition_if_allowed(item: QueueItem, new_status: QueueItemStatus, clock: Clock) -> bool:
    """Change the status when the table allows it, else leave it: for events
    that may or may not move an item (an open on a bounced item is counted
    but the item stays ``bounced``). Returns whether it changed."""
    if not allowed(QueueItemStatus(item.status), new_status):
        return False
    return transition(item, new_status, clock)


def _mark_resent(item: QueueItem, current: QueueItemStatus, clock: Clock) -> None:
    if item.resent_at is not None:
        raise IllegalTransition(
            current, S.QUEUED, f"it was resent once already ({item.resent_at.isoformat()})"
        )
    item.resent_at = clock.now()


# ----------------------------------------------------------------- set-based forms


def _require(current: QueueItemStatus, new: QueueItemStatus) -> None:
    if not allowed(current, new):
        raise IllegalTransition(current, new)


def claim_queued(
    session: Session,
    candidate_ids: Select[int],
    *,
    runner_id: str,
    lease_expires_at: datetime,
) -> Sequence[Row[int, int, int | None, str, int, DomainGroup]]:
    """queued → sending for the items ``candidate_ids`` selects, in one
    ``UPDATE … WHERE id IN (…) RETURNING``: each gets ``claimed_by``, a
    lease and one more attempt. Items no longer queued are left alone.
    Returns ``(id, mass_email_id, contact_id, email, attempts,
    domain_group)`` of the items claimed. The caller holds the claim's transaction and lock."""
    _require(S.QUEUED, S.SENDING)
    # A MATERIALIZED CTE runs the candidates' SELECT exactly once. As a plain
    # ``IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`` PostgreSQL may rescan
    # the subquery for each row (a nested-loop semi-join); a rescan then
    # skips the rows this very UPDATE has just changed and yields the next
    # n, so the statement claims far more than n.
    picked = candidate_ids.cte("claimable").prefix_with("MATERIALIZED")
    statement = (
        update(QueueItem)
        .where(QueueItem.id.in_(select(picked.c.id)), QueueItem.status == S.QUEUED)
        .values(
            status=S.SENDING,
            claimed_by=runner_id,
            lease_expires_at=lease_expires_at,
            attempts=QueueItem.attempts + 1,
        )
        .returning(
            QueueItem.id,
            QueueItem.mass_email_id,
            QueueItem.contact_id,
            QueueItem.email,
            QueueItem.attempts,
            QueueItem.domain_group,
        )
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).all()


@dataclass(frozen=True)
class AcceptedReply:
    """The relay's acceptance of a claimed item's message."""

    queue_item_id: int
    code: int | None
    reply: str


def mark_sent(
    session: Session,
    accepted: Sequence[AcceptedReply],
    *,
    runner_id: str,
    lease_expires_at: datetime,
    now: datetime,
) -> Sequence[Row[int, int, int | None]]:
    """sending → sent for the ``accepted`` items, in one ``UPDATE … FROM``
    (the replies as a table, ``bulk_sql.rows_table``) ``… RETURNING``:
    each gets ``sent_at``, its reply in ``last_code``/``last_reply`` and its
    lease cleared. Only items still in this claim's hands change: sending,
    claimed by ``runner_id`` under ``lease_expires_at`` (the statement's own
    condition, so a concurrent housekeeping that interrupted one is seen on
    SQLite too, which has no row locks). Returns ``(id, mass_email_id,
    contact_id)`` of the items marked sent; the others are no longer ours."""
    _require(S.SENDING, S.SENT)
    if not accepted:
        return []
    dialect = session.get_bind().dialect.name
    params = rows_parameters(
        dialect,
        "accepted",
        _ACCEPTED_COLUMNS,
        [(row.queue_item_id, row.code, row.reply) for row in accepted],
    )
    params.update(runner_id=runner_id, claim_lease=lease_expires_at, now=now)
    # Core execution of a statement built once: the dispatcher runs it for
    # every few messages, and building, hashing and the ORM's bulk-update
    # bookkeeping cost more than the UPDATE itself.
    return session.connection().execute(_mark_sent_statement(dialect), params).all()


_ACCEPTED_COLUMNS: dict[str, TypeEngine[Any]] = {
    "id": Integer(),
    "code": Integer(),
    "reply": Text(),
}


@functools.cache
def _mark_sent_statement(dialect: str) -> ReturningUpdate[int, int, int | None]:
    replies = rows_table(dialect, "accepted", _ACCEPTED_COLUMNS)
    return (
        update(QueueItem)
        .where(
            QueueItem.id == replies.c.id,
            QueueItem.status == S.SENDING,
            QueueItem.claimed_by == bindparam("runner_id", type_=String()),
            QueueItem.lease_expires_at == bindparam("claim_lease", type_=UTCDateTime()),
        )
        .values(
            status=S.SENT,
            sent_at=bindparam("now", type_=UTCDateTime()),
            last_code=replies.c.code,
            last_reply=replies.c.reply,
            lease_expires_at=None,
        )
        .returning(QueueItem.id, QueueItem.mass_email_id, QueueItem.contact_id)
    )


def interrupt_expired(session: Session, now: datetime) -> list[int]:
    """sending → interrupted for every item whose lease expired (``<=
    now``): its runner is gone or too late, so whether its message left is
    in doubt. Returns their ids. Nothing interrupted is resent without a
    person's say (``requeue_interrupted``)."""
    _require(S.SENDING, S.INTERRUPTED)
    statement = (
        update(QueueItem)
        .where(QueueItem.status == S.SENDING, QueueItem.lease_expires_at <= now)
        .values(status=S.INTERRUPTED)
        .returning(QueueItem.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(statement))


def requeue_interrupted(session: Session, mass_email_id: int) -> list[int]:
    """interrupted → queued for the mass email's interrupted items, after a
    person decided they may be sent (again). The attempt count is kept;
    they are due at once. Returns their ids."""
    _require(S.INTERRUPTED, S.QUEUED)
    statement = (
        update(QueueItem)
        .where(QueueItem.mass_email_id == mass_email_id, QueueItem.status == S.INTERRUPTED)
        .values(status=S.QUEUED, next_attempt_at=None, claimed_by=None, lease_expires_at=None)
        .returning(QueueItem.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(statement))
