"""What the dispatcher does with each claimed item: the send-time checks
before it is handed to SMTP, and the SMTP result after.

Every function here changes its items (statuses through
``app.services.queue_status``), finishes their ``send_attempts`` rows and
commits before it returns, so each result is durable right after its reply
and a crash loses at most the items in flight (which the lease turns into
``interrupted``). ``record_accepted`` takes the accepted replies that
arrived together — the common case — and records them in one transaction
of a fixed number of statements (one commit per group, not per message:
the per-item form cost ~2 ms of a runner's time per message); every other
result is recorded on its own.

Results (SPEC §4):

- ``accepted`` → ``sent`` (``sent_at``; ``last_code``/``last_reply`` keep the
  reply, which holds the relay's queue id); campaign log ``sent``.
- ``temporary`` (4xx, a dropped connection, a timeout) → back to
  ``queued``, due after ``retry_base_seconds * 2**(attempts - 1)`` (at most
  ``MAX_RETRY_DELAY``), while ``attempts < max_attempts``; else ``failed``
  with campaign log ``failed``.
- ``rejected_recipient`` (5xx to RCPT) → ``bounced``, ``bounce_kind``
  ``hard``; the address is suppressed (reason hard bounce, source "smtp
  reply at send time") and the contact's address marked invalid with the
  reply as the reason (``suppress_hard_bounce``); campaign log
  ``bounced_hard``.
- ``rejected`` (any other 5xx) → ``failed``, the reply kept; log ``failed``.
- ``auth_failed`` → released (``release``): the relay refused our
  credentials, not the message, so the attempt is not charged.
- A result for an item that is no longer this runner's ``sending`` one
  (its lease ran out and it became ``interrupted``) changes no status; the
  reply is kept on its ledger row and, for an accepted message, on the item
  (``last_reply`` says "accepted after the lease expired"), so the person
  deciding about it can see that it left.

Released claims (``release``: the tick ended before their turn, an
authentication failure, a mass email that cannot be built) go back to
``queued`` with their attempt uncharged and keep their ledger row
(outcome ``released``); the quota counts it, erring on the safe side.

Send-time checks (``check_contact``), for a contact changed since the queue
was built: opted out → ``unsubscribed`` (``skip_reason``; not a campaign
log event, since the opt-out itself was logged when it happened); a
suppressed address (``is_suppressed``: the suppression list) →
``dropped``; deleted, or address marked invalid → ``error``. A message that
cannot be built (``RecipientError``) → ``error`` with the reason. Skipped
items keep their ledger row (outcome ``skipped``), uncharged.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, Text, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Update
from sqlalchemy.types import TypeEngine

from app.clock import Clock
from app.models import (
    BounceKind,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    QueueItem,
    QueueItemStatus,
    SendAttempt,
    SuppressionReason,
)
from app.models.base import UTCDateTime
from app.services import queue_status, suppression
from app.services.bulk_sql import rows_parameters, rows_table
from app.services.dispatch import AttemptOutcome, Claim
from app.services.queue_status import AcceptedReply
from app.services.runtime_settings import RuntimeSettings
from app.services.transport import SendOutcome, SendResult

log = logging.getLogger(__name__)

S = QueueItemStatus
MAX_RETRY_DELAY = timedelta(hours=24)
LATE_ACCEPTED_PREFIX = "accepted after the lease expired: "


class ItemOutcome(enum.StrEnum):
    """What became of a claimed item in this tick."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    BOUNCED = "bounced"
    SKIPPED = "skipped"
    RELEASED = "released"
    LATE = "late"  # no longer ours: the reply is only recorded


def retry_delay(attempts: int, retry_base_seconds: int) -> timedelta:
    """Exponential back-off: the base after the first attempt, doubling
    after each further one, at most ``MAX_RETRY_DELAY``."""
    exponent = min(max(attempts - 1, 0), 32)  # 2**32 base seconds is past any cap
    return min(timedelta(seconds=retry_base_seconds * 2**exponent), MAX_RETRY_DELAY)


# ----------------------------------------------------------------- hooks


def is_suppressed(session: Session, address: str) -> bool:
    """Whether ``address`` is on the suppression list (SPEC §5,
    ``app.services.suppression``) and must not be mailed."""
    return suppression.is_suppressed(session, address)


SEND_TIME_SOURCE = "smtp reply at send time"


def suppress_hard_bounce(
    session: Session,
    item: QueueItem,
    reason: str,
    clock: Clock,
    *,
    source: str = SEND_TIME_SOURCE,
) -> Contact | None:
    """A hard bounce of ``item`` (a 5xx to RCPT, or a hard bounce message):
    the address it was sent to is suppressed (reason hard bounce,
    ``source``), and the item's contact's address is marked invalid (reason
    = the reply or diagnostic, with the time) when the contact still has
    that address. Returns the contact changed, if any."""
    suppression.add(session, item.email, SuppressionReason.HARD_BOUNCE, source, clock)
    if item.contact_id is None:
        return None
    contact = session.get(Contact, item.contact_id)
    if contact is None or (contact.email_lower or "") != item.email.lower():
        return None
    contact.email_status = EmailStatus.INVALID
    contact.email_status_reason = reason
    contact.email_status_at = clock.now()
    return contact


# ----------------------------------------------------------------- send-time checks


@dataclass(frozen=True, slots=True)
class ContactSnapshot:
    """A contact's columns as read when its message is built: what the
    message (``messages.ContactFields``) and the send-time checks need. Plain
    values, not an ORM object: it stays valid while results are committed
    (which expires the session's objects) and costs a fraction to make."""

    id: int
    email: str | None
    first_name: str
    last_name: str
    company: str
    audience_type: str
    custom_fields: dict[str, Any]
    opted_out: bool
    email_status: EmailStatus
    email_status_reason: str


def load_contacts(session: Session, ids: Sequence[int]) -> dict[int, ContactSnapshot]:
    """Id → snapshot of the contacts ``ids`` that still exist, one query."""
    columns = [getattr(Contact, field.name) for field in fields(ContactSnapshot)]
    rows = session.execute(select(*columns).where(Contact.id.in_(ids)))
    return {row[0]: ContactSnapshot(*row) for row in rows}


def check_contact(
    session: Session,
    claim: Claim,
    contact: ContactSnapshot | None,
    *,
    suppressed: bool | None = None,
) -> tuple[S, str] | None:
    """Why the claimed item must not be sent now, as (status, reason), or
    None when it may be (see the module's rules). ``suppressed``: whether
    the claim's address is suppressed, when the caller looked it up with
    others (``suppression.suppressed_among``); None asks the list."""
    if contact is None:
        return S.ERROR, "the contact was deleted after the queue was built"
    if contact.opted_out:
        return S.UNSUBSCRIBED, "opted out after the queue was built"
    if suppressed is None:
        suppressed = is_suppressed(session, claim.email)
    if suppressed:
        return S.DROPPED, "the address is suppressed"
    if contact.email_status == EmailStatus.INVALID:
        why = contact.email_status_reason or "no reason given"
        return S.ERROR, f"the address is marked invalid: {why}"
    return None


def skip(session: Session, claim: Claim, status: S, reason: str, clock: Clock) -> ItemOutcome:
    """The claimed item is not sent: ``status`` with ``reason``; commits."""
    now = clock.now()
    item = _locked_item(session, claim)
    _finish_attempt(session, claim, now, AttemptOutcome.SKIPPED, code=None, reply=reason)
    if not _still_ours(item, claim):
        session.commit()
        return ItemOutcome.LATE
    queue_status.transition(item, status, clock)
    item.skip_reason = reason
    item.attempts -= 1
    item.lease_expires_at = None
    if status == S.ERROR:
        _log(session, item, CampaignLogEvent.ERROR, now, reason=reason)
    elif status == S.DROPPED:
        _log(session, item, CampaignLogEvent.DROPPED, now, reason=reason)
    session.commit()
    log.info("queue item %s not sent (%s): %s", claim.queue_item_id, status, reason)
    return ItemOutcome.SKIPPED


def release(session: Session, claims: list[Claim], clock: Clock, reason: str) -> int:
    """Claims not handed to SMTP go back to ``queued``, their attempt not
    charged, their ledger rows finished as ``released``; one commit.
    Returns how many were still this runner's to release."""
    now = clock.now()
    released = 0
    for claim in claims:
        item = _locked_item(session, claim)
        _finish_attempt(session, claim, now, AttemptOutcome.RELEASED, code=None, reply=reason)
        if not _still_ours(item, claim):
            continue
        queue_status.transition(item, S.QUEUED, clock)
        item.attempts -= 1
        item.lease_expires_at = None
        released += 1
    session.commit()
    return released


# ----------------------------------------------------------------- results


def record_result(
    session: Session, claim: Claim, result: SendResult, clock: Clock, runtime: RuntimeSettings
) -> ItemOutcome:
    """Apply the SMTP ``result`` of a claimed item and commit (see the
    module's rules). ``auth_failed`` is the caller's to handle (``release``)."""
    if result.outcome is SendOutcome.AUTH_FAILED:
        raise ValueError("an authentication failure releases the claim; see release()")
    now = clock.now()
    item = _locked_item(session, claim)
    _finish_attempt(session, claim, now, result.outcome.value, code=result.code, reply=result.reply)
    if not _still_ours(item, claim):
        if result.accepted:
            item.last_code = result.code
            item.last_reply = LATE_ACCEPTED_PREFIX + result.reply
        session.commit()
        log.warning(
            "queue item %s: %s reply after its claim ended (now %s)",
            claim.queue_item_id,
            result.outcome,
            item.status,
        )
        return ItemOutcome.LATE
    item.last_code = result.code
    item.last_reply = result.reply
    item.lease_expires_at = None
    outcome = _apply(session, item, result, clock, runtime)
    session.commit()
    return outcome


def _apply(
    session: Session, item: QueueItem, result: SendResult, clock: Clock, runtime: RuntimeSettings
) -> ItemOutcome:
    now = clock.now()
    reply = {"code": result.code, "reply": result.reply}
    if result.outcome is SendOutcome.ACCEPTED:
        queue_status.transition(item, S.SENT, clock)
        _log(session, item, CampaignLogEvent.SENT, now, **reply)
        return ItemOutcome.SENT
    if result.outcome is SendOutcome.REJECTED_RECIPIENT:
        queue_status.transition(item, S.BOUNCED, clock)
        item.bounce_kind = BounceKind.HARD
        suppress_hard_bounce(session, item, result.reply, clock)
        _log(session, item, CampaignLogEvent.BOUNCED_HARD, now, at="rcpt", **reply)
        return ItemOutcome.BOUNCED
    if result.outcome is SendOutcome.TEMPORARY and item.attempts < runtime.max_attempts:
        queue_status.transition(item, S.QUEUED, clock)
        item.next_attempt_at = now + retry_delay(item.attempts, runtime.retry_base_seconds)
        return ItemOutcome.RETRY
    queue_status.transition(item, S.FAILED, clock)
    why = "retries exhausted" if result.outcome is SendOutcome.TEMPORARY else "rejected"
    _log(session, item, CampaignLogEvent.FAILED, now, reason=why, attempts=item.attempts, **reply)
    return ItemOutcome.FAILED


def record_accepted(
    session: Session,
    accepted: Sequence[tuple[Claim, SendResult]],
    clock: Clock,
    runtime: RuntimeSettings,
) -> list[ItemOutcome]:
    """Accepted replies that arrived together, recorded in one transaction
    and committed: the items still this runner's become ``sent``
    (``queue_status.mark_sent``), their ledger rows are finished and their
    campaign log ``sent`` rows written, a fixed number of statements
    whatever the group's size. A reply for an item no longer ours then goes
    through ``record_result`` (``late``). Returns each pair's outcome, in
    order."""
    if not accepted:
        return []
    now = clock.now()
    sent: dict[int, tuple[int, int | None]] = {}
    for (runner_id, lease_expires_at), group in _by_lease(accepted).items():
        rows = queue_status.mark_sent(
            session,
            [
                AcceptedReply(claim.queue_item_id, result.code, result.reply)
                for claim, result in group
            ],
            runner_id=runner_id,
            lease_expires_at=lease_expires_at,
            now=now,
        )
        sent.update(
            {item_id: (mass_email_id, contact_id) for item_id, mass_email_id, contact_id in rows}
        )
    _finish_accepted_attempts(session, accepted, now)
    _log_sent(session, accepted, sent, now)
    session.commit()
    outcomes = []
    for claim, result in accepted:
        if claim.queue_item_id in sent:
            outcomes.append(ItemOutcome.SENT)
        else:
            outcomes.append(record_result(session, claim, result, clock, runtime))
    return outcomes


def _by_lease(
    accepted: Sequence[tuple[Claim, SendResult]],
) -> dict[tuple[str, datetime], list[tuple[Claim, SendResult]]]:
    """The pairs per claim (runner and lease): one tick's claims share one."""
    groups: dict[tuple[str, datetime], list[tuple[Claim, SendResult]]] = {}
    for claim, result in accepted:
        groups.setdefault((claim.runner_id, claim.lease_expires_at), []).append((claim, result))
    return groups


def _finish_accepted_attempts(
    session: Session, accepted: Sequence[tuple[Claim, SendResult]], now: datetime
) -> None:
    """The ledger rows of accepted replies, finished in one statement."""
    dialect = session.get_bind().dialect.name
    params = rows_parameters(
        dialect,
        "replies",
        _REPLY_COLUMNS,
        [(claim.attempt_id, result.code, result.reply[:1000]) for claim, result in accepted],
    )
    params["now"] = now
    session.connection().execute(_finish_accepted_statement(dialect), params)


_REPLY_COLUMNS: dict[str, TypeEngine[Any]] = {
    "attempt_id": Integer(),
    "code": Integer(),
    "reply": Text(),
}


@functools.cache
def _finish_accepted_statement(dialect: str) -> Update:
    """Built once (see ``queue_status.mark_sent``)."""
    replies = rows_table(dialect, "replies", _REPLY_COLUMNS)
    return (
        update(SendAttempt)
        .where(SendAttempt.id == replies.c.attempt_id)
        .values(
            finished_at=bindparam("now", type_=UTCDateTime()),
            outcome=SendOutcome.ACCEPTED.value,
            code=replies.c.code,
            reply=replies.c.reply,
        )
    )


def _log_sent(
    session: Session,
    accepted: Sequence[tuple[Claim, SendResult]],
    sent: dict[int, tuple[int, int | None]],
    now: datetime,
) -> None:
    """Campaign log ``sent`` of the items marked sent, in one statement."""
    rows = [
        {
            "mass_email_id": sent[claim.queue_item_id][0],
            "queue_item_id": claim.queue_item_id,
            "contact_id": sent[claim.queue_item_id][1],
            "event": CampaignLogEvent.SENT,
            "occurred_at": now,
            "detail": {
                key: value
                for key, value in {"code": result.code, "reply": result.reply}.items()
                if value is not None
            },
        }
        for claim, result in accepted
        if claim.queue_item_id in sent
    ]
    if rows:
        session.connection().execute(_LOG_INSERT, rows)


_LOG_INSERT = insert(CampaignLogEntry)


def record_in_doubt(session: Session, claim: Claim, error: str) -> None:
    """The transport raised while the message was handed over: whether it
    left is unknown. The item stays ``sending`` until its lease expires and
    housekeeping makes it ``interrupted``; the error is kept on the ledger
    row. Commits."""
    session.execute(
        update(SendAttempt).where(SendAttempt.id == claim.attempt_id).values(reply=error[:1000])
    )
    session.commit()
    log.error("queue item %s in doubt: %s", claim.queue_item_id, error)


# ----------------------------------------------------------------- helpers


def _locked_item(session: Session, claim: Claim) -> QueueItem:
    """The claimed item re-read under a row lock (PostgreSQL), so a
    concurrent housekeeping or retry is seen, not overwritten."""
    item = session.get(QueueItem, claim.queue_item_id, with_for_update=True, populate_existing=True)
    if item is None:  # queue items are never deleted
        raise LookupError(f"queue item {claim.queue_item_id} vanished")
    return item


def _still_ours(item: QueueItem, claim: Claim) -> bool:
    """Whether the item is still in this claim's hands: ``sending``, by this
    runner, under this lease (a runner id may claim the same item again in
    a later tick)."""
    return (
        item.status == S.SENDING
        and item.claimed_by == claim.runner_id
        and item.lease_expires_at == claim.lease_expires_at
    )


def _finish_attempt(
    session: Session,
    claim: Claim,
    now: datetime,
    outcome: str,
    *,
    code: int | None,
    reply: str,
) -> None:
    session.execute(
        update(SendAttempt)
        .where(SendAttempt.id == claim.attempt_id)
        .values(finished_at=now, outcome=outcome, code=code, reply=reply[:1000])
    )


def _log(
    session: Session, item: QueueItem, event: CampaignLogEvent, now: datetime, **detail: object
) -> None:
    session.add(
        CampaignLogEntry(
            mass_email_id=item.mass_email_id,
            queue_item_id=item.id,
            contact_id=item.contact_id,
            event=event,
            occurred_at=now,
            detail={key: value for key, value in detail.items() if value is not None},
        )
    )
