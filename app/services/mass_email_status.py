"""Mass email status: the one place where ``MassEmail.status`` changes.

The table ``ALLOWED`` lists every legal transition (SPEC §3, §4)::

    draft ──schedule──▶ pending ──start time reached, queue built──▶ in_progress ──▶ complete
      ▲                   │  │                                         │
      └────unschedule─────┘  └──pause──▶ paused ◀──────pause───────────┘
                                           │ resume: back to pending or in_progress
    draft, pending, in_progress, paused ──▶ canceled
    pending, in_progress, paused ──▶ failed (with a reason)
    complete ──reopen_for_resend──▶ in_progress (only through that function)

Rules:

- ``complete``, ``canceled`` and ``failed`` are final for ``transition``.
  The one way back is ``reopen_for_resend``: a person resent a recipient
  after correcting its address (``app.services.resend``), so a complete
  mass email sends that one message and then completes again, as the
  dispatcher completes any mass email with nothing left to send.
- The table checks the states only; what must hold before a draft may be
  scheduled (pre-flight, CAN-SPAM confirmation, snapshot) is
  ``app.services.campaigns.schedule_mass_email``'s to enforce.
- Pending → in_progress only once the start time has come: the dispatcher
  builds the queue and then moves the mass email on.
- Resume goes back to where the pause came from. The model keeps no
  ``paused_from`` column, so it is derived: a paused mass email whose queue
  was built (``queue_built_at`` set, or any queue item) had started, and
  resumes to ``in_progress`` (an empty audience builds an empty queue, and
  that mass email had started too); without a queue it had not, and resumes
  to ``pending``, where the dispatcher picks it up at its start time.
  ``transition`` refuses the other target: resuming a started mass email to
  ``pending`` would build its queue a second time and mail its recipients
  twice.
- A failure needs a reason. ``MassEmail`` has no column for one, so it is
  written to the campaign log: a ``failed`` entry of the mass email with no
  queue item and no contact, ``detail = {"scope": "mass_email", "reason":
  …, "from_status": …}``. Per-recipient failures always name their queue
  item, so reports tell the two apart by ``queue_item_id IS NULL``.

The caller holds the row (``SELECT … FOR UPDATE`` on PostgreSQL where two
processes may race) and commits; this module flushes nothing itself except
the failure's log entry, which it adds to the mass email's session.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from app.clock import Clock
from app.models import CampaignLogEntry, CampaignLogEvent, MassEmail, MassEmailStatus, QueueItem

S = MassEmailStatus

ALLOWED: Mapping[MassEmailStatus, frozenset[MassEmailStatus]] = {
    S.DRAFT: frozenset({S.PENDING, S.CANCELED}),
    S.PENDING: frozenset({S.DRAFT, S.IN_PROGRESS, S.PAUSED, S.CANCELED, S.FAILED}),
    S.IN_PROGRESS: frozenset({S.COMPLETE, S.PAUSED, S.CANCELED, S.FAILED}),
    # Resume: pending or in_progress, whichever ``resume_status`` derives.
    S.PAUSED: frozenset({S.PENDING, S.IN_PROGRESS, S.CANCELED, S.FAILED}),
    S.COMPLETE: frozenset(),
    S.CANCELED: frozenset(),
    S.FAILED: frozenset(),
}

assert set(ALLOWED) == set(MassEmailStatus), "every status needs a row"

FINAL_STATUSES = frozenset(status for status, targets in ALLOWED.items() if not targets)
# Statuses in which the mass email may still send: scheduled, sending or paused.
ACTIVE_STATUSES = frozenset({S.PENDING, S.IN_PROGRESS, S.PAUSED})
_RESUME_TARGETS = frozenset({S.PENDING, S.IN_PROGRESS})


class IllegalTransition(ValueError):
    """A status change the rules refuse; names both states and why."""

    def __init__(self, current: MassEmailStatus, new: MassEmailStatus, why: str = "") -> None:
        self.current = current
        self.new = new
        message = f"mass email status cannot change from {current} to {new}"
        super().__init__(f"{message}: {why}" if why else message)


def allowed_transitions(status: MassEmailStatus) -> frozenset[MassEmailStatus]:
    """The statuses ``status`` may change to (from ``paused``: both resume
    targets, of which ``transition`` accepts only the derived one)."""
    return ALLOWED[status]


def has_queue(session: Session, mass_email_id: int) -> bool:
    """Whether the mass email's queue has been built (any queue item)."""
    first = session.scalar(
        select(QueueItem.id).where(QueueItem.mass_email_id == mass_email_id).limit(1)
    )
    return first is not None


def resume_status(mass_email: MassEmail) -> MassEmailStatus:
    """Where a paused mass email resumes to: ``in_progress`` when its queue
    was built, else ``pending`` (see the module's rules)."""
    session = object_session(mass_email)
    started = mass_email.queue_built_at is not None or (
        session is not None and mass_email.id is not None and has_queue(session, mass_email.id)
    )
    return S.IN_PROGRESS if started else S.PENDING


def transition(
    mass_email: MassEmail, new_status: MassEmailStatus, clock: Clock, reason: str = ""
) -> None:
    """Change ``mass_email``'s status to ``new_status``.

    Raises ``IllegalTransition`` for a change the table refuses (staying
    put included), for pending → in_progress before the start time, and
    for a resume to the other status than ``resume_status``'s. Raises
    ``ValueError`` for a failure without a reason. Entering ``failed``
    writes the reason to the campaign log.
    """
    current = MassEmailStatus(mass_email.status)
    if new_status not in ALLOWED[current]:
        raise IllegalTransition(current, new_status)
    _check_start_time(mass_email, current, new_status, clock)
    _check_resume(mass_email, current, new_status)
    if new_status == S.FAILED:
        _log_failure(mass_email, current, reason, clock)
    mass_email.status = new_status


def reopen_for_resend(mass_email: MassEmail) -> None:
    """complete → in_progress, for a resend after correction only (see the
    module's rules); ``transition`` itself keeps ``complete`` final. Raises
    ``IllegalTransition`` from any other status or for a deleted mass email."""
    current = MassEmailStatus(mass_email.status)
    if current != S.COMPLETE:
        raise IllegalTransition(current, S.IN_PROGRESS, "only a complete mass email is reopened")
    if mass_email.deleted_at is not None:
        raise IllegalTransition(current, S.IN_PROGRESS, "it was deleted")
    mass_email.status = S.IN_PROGRESS


def _check_start_time(
    mass_email: MassEmail, current: MassEmailStatus, new: MassEmailStatus, clock: Clock
) -> None:
    if current != S.PENDING or new != S.IN_PROGRESS:
        return
    if mass_email.start_at is None:
        raise IllegalTransition(current, new, "it has no start time")
    if mass_email.start_at > clock.now():
        raise IllegalTransition(current, new, f"it starts at {mass_email.start_at.isoformat()}")


def _check_resume(mass_email: MassEmail, current: MassEmailStatus, new: MassEmailStatus) -> None:
    if current != S.PAUSED or new not in _RESUME_TARGETS:
        return
    expected = resume_status(mass_email)
    if new != expected:
        why = (
            "its queue exists, so it resumes sending"
            if expected == S.IN_PROGRESS
            else "its queue was never built, so it resumes waiting for its start time"
        )
        raise IllegalTransition(current, new, why)


def _log_failure(
    mass_email: MassEmail, current: MassEmailStatus, reason: str, clock: Clock
) -> None:
    reason = reason.strip()
    if not reason:
        raise ValueError("a mass email cannot fail without a reason")
    session = object_session(mass_email)
    if session is None:
        raise ValueError("the mass email must belong to a session to record its failure")
    session.add(
        CampaignLogEntry(
            mass_email_id=mass_email.id,
            queue_item_id=None,
            contact_id=None,
            event=CampaignLogEvent.FAILED,
            occurred_at=clock.now(),
            detail={"scope": "mass_email", "reason": reason, "from_status": current.value},
        )
    )
