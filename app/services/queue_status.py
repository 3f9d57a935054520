"""Queue item status: the one place where ``QueueItem.status`` changes.

One exception: the initial status. ``app.services.queue_build.build_queue``
inserts each item with its first status (queued, unsubscribed or error;
dropped once suppression exists) set-based, in the ``INSERT … SELECT`` that
builds the queue; every later change goes through this module.

The table ``ALLOWED`` lists every legal transition. Three kinds:

- Delivery (the dispatcher): queued → sending → sent, a retry back to
  queued, or failed/bounced/interrupted; queued items can be dropped,
  unsubscribed (opted out before their turn) or end in error.
- A person's retry: interrupted → queued. Nothing in doubt is resent
  without someone's say (DESIGN: never lose, never duplicate).
- Engagement "upgrades" after delivery: sent → opened → clicked →
  unsubscribed, plus bounced and spam_report, which can arrive late. An
  upgrade never goes back: an open after a click keeps ``clicked``; a
  second click keeps ``clicked``.

Not here yet: bounced/failed/dropped/error → queued ("resend once after the
address was corrected") arrives with the dispatcher issue, which decides who
may ask for it.

Callers that only *might* change a status (engagement events) check with
``allowed`` first, or use ``transition_if_allowed``; ``transition`` itself
refuses an illegal change with ``IllegalTransition``.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.clock import Clock
from app.models.queue import QueueItem, QueueItemStatus

S = QueueItemStatus

ALLOWED: Mapping[QueueItemStatus, frozenset[QueueItemStatus]] = {
    S.QUEUED: frozenset({S.SENDING, S.DROPPED, S.UNSUBSCRIBED, S.ERROR}),
    S.SENDING: frozenset({S.SENT, S.QUEUED, S.FAILED, S.BOUNCED, S.INTERRUPTED}),
    S.INTERRUPTED: frozenset({S.QUEUED}),
    S.SENT: frozenset({S.OPENED, S.CLICKED, S.UNSUBSCRIBED, S.BOUNCED, S.SPAM_REPORT}),
    S.OPENED: frozenset({S.CLICKED, S.UNSUBSCRIBED, S.BOUNCED, S.SPAM_REPORT}),
    S.CLICKED: frozenset({S.UNSUBSCRIBED, S.BOUNCED, S.SPAM_REPORT}),
    S.BOUNCED: frozenset(),
    S.UNSUBSCRIBED: frozenset(),
    S.SPAM_REPORT: frozenset(),
    S.DROPPED: frozenset(),
    S.ERROR: frozenset(),
    S.FAILED: frozenset(),
}

assert set(ALLOWED) == set(QueueItemStatus), "every status needs a row"


class IllegalTransition(ValueError):
    """A status change the table does not allow; names both states."""

    def __init__(self, current: QueueItemStatus, new: QueueItemStatus) -> None:
        self.current = current
        self.new = new
        super().__init__(f"queue item status cannot change from {current} to {new}")


def allowed(current: QueueItemStatus, new: QueueItemStatus) -> bool:
    """Whether ``current → new`` is a legal change (staying put is not a change)."""
    return new in ALLOWED[current]


def transition(item: QueueItem, new_status: QueueItemStatus, clock: Clock) -> bool:
    """Change ``item``'s status to ``new_status``.

    Returns False when the item already has that status (nothing to do),
    True when it changed. Entering ``sent`` stamps ``sent_at``. Raises
    ``IllegalTransition`` for a change the table refuses.
    """
    current = QueueItemStatus(item.status)
    if current == new_status:
        return False
    if not allowed(current, new_status):
        raise IllegalTransition(current, new_status)
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
