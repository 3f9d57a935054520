"""Resend after correction (SPEC §4): a recipient that bounced, was dropped,
errored or failed is sent once more, at a person's request, after its
contact's address was corrected.

Rules, checked in this order; the first that fails refuses the resend with
a ``ResendRefused`` naming it, and nothing changes:

- **Who asks is named** (``requested_by``): it goes to the campaign log.
- **The item** is ``bounced``, ``dropped``, ``error`` or ``failed``
  (``queue_status.RESEND_FROM``) and was **never resent before**
  (``resent_at``; ``queue_status.transition`` enforces this too, for any
  caller). ``failed`` counts: a recipient domain that answers 4xx until the
  retries run out (a typo such as ``gmial.con`` behind some relays) fails
  rather than bounces, and the corrected-address rule below keeps this from
  becoming a way to resend a message the relay refused for its content.
- **The mass email** still exists and may send: in progress, paused (the
  item waits for the resume) or complete. A complete one is reopened
  (``mass_email_status.reopen_for_resend``) and completes again when the
  dispatcher is done with the item. Canceled and failed ones send nothing.
- **The contact** still exists, has an address **different** (compared
  case-insensitively) from the one the item was sent to — that is what
  "after correction" means — which is valid (not marked invalid by a later
  hard bounce), not suppressed, and the contact has not opted out.
- **The corrected address is not already a recipient of this mass email**
  through another queue item (SPEC §4 de-duplicates an audience by address).

The resend puts the item back to ``queued`` under the new address with a
fresh start: attempts, next attempt, last reply, bounce kind, skip reason,
claim and ``sent_at`` are cleared, so the dispatcher sends it in its next
portion, under the hourly quota like any other item. Its past attempts stay
in ``send_attempts`` (the quota ledger never forgets). A ``resent`` entry in
the campaign log records who asked, the old and the new address, the status
it came from and whether the mass email was reopened.

The item's and the mass email's rows are read under a lock (PostgreSQL),
so two people asking at once resend it once. Flushes; the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import (
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
)
from app.services import mass_email_status, queue_status
from app.services.dispatch import DispatchError
from app.services.dispatch_results import is_suppressed
from app.services.domain_groups import domain_group

REQUESTED_BY_MAX_LENGTH = 200
_SENDABLE = frozenset(
    {MassEmailStatus.IN_PROGRESS, MassEmailStatus.PAUSED, MassEmailStatus.COMPLETE}
)


class ResendRefused(DispatchError):
    """A resend the rules refuse; the message says which rule."""


@dataclass(frozen=True)
class Resend:
    queue_item_id: int
    mass_email_id: int
    old_email: str
    new_email: str
    reopened: bool  # the mass email was complete and sends again


def resend_after_correction(
    session: Session, queue_item_id: int, clock: Clock, *, requested_by: str
) -> Resend:
    """Queue ``queue_item_id`` again for its contact's corrected address
    (see the module's rules). Raises ``ResendRefused``."""
    who = _requester(requested_by)
    item = session.get(QueueItem, queue_item_id, with_for_update=True, populate_existing=True)
    if item is None:
        raise ResendRefused(f"no queue item with id {queue_item_id}")
    _check_item(item)
    mass_email = _sendable_mass_email(session, item)
    contact = _corrected_contact(session, item)
    _check_not_a_recipient_yet(session, item, contact)

    resend = Resend(
        queue_item_id=item.id,
        mass_email_id=mass_email.id,
        old_email=item.email,
        new_email=contact.email or "",
        reopened=mass_email.status == MassEmailStatus.COMPLETE,
    )
    from_status = QueueItemStatus(item.status)
    if resend.reopened:
        mass_email_status.reopen_for_resend(mass_email)
    queue_status.transition(item, QueueItemStatus.QUEUED, clock)
    _start_afresh(item, resend.new_email)
    session.add(
        CampaignLogEntry(
            mass_email_id=item.mass_email_id,
            queue_item_id=item.id,
            contact_id=item.contact_id,
            event=CampaignLogEvent.RESENT,
            occurred_at=clock.now(),
            detail={
                "requested_by": who,
                "old_email": resend.old_email,
                "new_email": resend.new_email,
                "from_status": from_status.value,
                "reopened_mass_email": resend.reopened,
            },
        )
    )
    session.flush()
    return resend


def _requester(requested_by: str) -> str:
    who = " ".join(requested_by.split())
    if not who:
        raise ResendRefused("requested_by: say who asks for the resend (it is logged)")
    return who[:REQUESTED_BY_MAX_LENGTH]


def _check_item(item: QueueItem) -> None:
    status = QueueItemStatus(item.status)
    if status not in queue_status.RESEND_FROM:
        raise ResendRefused(
            f"queue item {item.id} is {status}: only a recipient that bounced, was "
            "dropped, errored or failed can be resent"
        )
    if item.resent_at is not None:
        raise ResendRefused(
            f"queue item {item.id} was resent once already "
            f"({item.resent_at:%Y-%m-%d %H:%M} UTC); a recipient is resent only once"
        )


def _sendable_mass_email(session: Session, item: QueueItem) -> MassEmail:
    mass_email = session.get(
        MassEmail, item.mass_email_id, with_for_update=True, populate_existing=True
    )
    if mass_email is None or mass_email.deleted_at is not None:
        raise ResendRefused(f"mass email {item.mass_email_id} was deleted")
    if mass_email.status not in _SENDABLE:
        raise ResendRefused(
            f"mass email {mass_email.id} is {mass_email.status}: only a mass email in "
            "progress, paused or complete sends a recipient again"
        )
    return mass_email


def _corrected_contact(session: Session, item: QueueItem) -> Contact:
    contact = None if item.contact_id is None else session.get(Contact, item.contact_id)
    if contact is None:
        raise ResendRefused(f"queue item {item.id}: its contact was deleted")
    if not contact.email or not contact.email_lower:
        raise ResendRefused(f"queue item {item.id}: its contact has no address")
    if contact.email_lower == item.email.lower():
        raise ResendRefused(
            f"queue item {item.id}: the address was not corrected (the contact still "
            f"has {contact.email}); correct it first"
        )
    if contact.email_status == EmailStatus.INVALID:
        why = contact.email_status_reason or "no reason given"
        raise ResendRefused(
            f"queue item {item.id}: the corrected address {contact.email} is marked invalid: {why}"
        )
    if contact.opted_out:
        raise ResendRefused(f"queue item {item.id}: the contact opted out of mass email")
    if is_suppressed(session, contact.email):
        raise ResendRefused(f"queue item {item.id}: the address {contact.email} is suppressed")
    return contact


def _check_not_a_recipient_yet(session: Session, item: QueueItem, contact: Contact) -> None:
    # lower() folds ASCII only on SQLite; addresses differing in the case of
    # a non-ASCII letter are not matched there (PostgreSQL folds them).
    other = session.scalar(
        select(QueueItem.id)
        .where(
            QueueItem.mass_email_id == item.mass_email_id,
            QueueItem.id != item.id,
            func.lower(QueueItem.email) == contact.email_lower,
        )
        .limit(1)
    )
    if other is not None:
        raise ResendRefused(
            f"queue item {item.id}: {contact.email} is already a recipient of this mass "
            f"email (queue item {other})"
        )


def _start_afresh(item: QueueItem, new_email: str) -> None:
    """The delivery columns as for a new item, under the new address (and
    its domain group, which paces it)."""
    item.email = new_email
    item.domain_group = domain_group(new_email)
    item.attempts = 0
    item.next_attempt_at = None
    item.last_code = None
    item.last_reply = ""
    item.bounce_kind = None
    item.skip_reason = ""
    item.claimed_by = None
    item.lease_expires_at = None
    item.sent_at = None
