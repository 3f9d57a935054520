"""Queue item status: the transition table, refusals, and that every status
fits the database's CHECK constraint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import Campaign, MassEmail, QueueItem, QueueItemStatus
from app.services.queue_status import (
    ALLOWED,
    RESEND_FROM,
    IllegalTransition,
    allowed,
    transition,
    transition_if_allowed,
)

S = QueueItemStatus

EXPECTED_ALLOWED = {
    (S.QUEUED, S.SENDING),
    (S.QUEUED, S.DROPPED),
    (S.QUEUED, S.UNSUBSCRIBED),
    (S.QUEUED, S.ERROR),
    (S.SENDING, S.SENT),
    (S.SENDING, S.QUEUED),
    (S.SENDING, S.FAILED),
    (S.SENDING, S.BOUNCED),
    (S.SENDING, S.INTERRUPTED),
    (S.SENDING, S.UNSUBSCRIBED),  # send-time checks
    (S.SENDING, S.DROPPED),
    (S.SENDING, S.ERROR),
    (S.INTERRUPTED, S.QUEUED),
    (S.SENT, S.OPENED),
    (S.SENT, S.CLICKED),
    (S.SENT, S.UNSUBSCRIBED),
    (S.SENT, S.BOUNCED),
    (S.SENT, S.SPAM_REPORT),
    (S.OPENED, S.CLICKED),
    (S.OPENED, S.UNSUBSCRIBED),
    (S.OPENED, S.BOUNCED),
    (S.OPENED, S.SPAM_REPORT),
    (S.CLICKED, S.UNSUBSCRIBED),
    (S.CLICKED, S.BOUNCED),
    (S.CLICKED, S.SPAM_REPORT),
    # A person's resend after correction, once (app.services.resend).
    (S.BOUNCED, S.QUEUED),
    (S.DROPPED, S.QUEUED),
    (S.ERROR, S.QUEUED),
    (S.FAILED, S.QUEUED),
}

REFUSED_SAMPLE = [
    (S.CLICKED, S.OPENED),  # engagement never downgrades
    (S.OPENED, S.SENT),
    (S.UNSUBSCRIBED, S.CLICKED),
    (S.QUEUED, S.SENT),  # never sent without being claimed
    (S.QUEUED, S.OPENED),
    (S.SENT, S.QUEUED),  # nothing sent is queued again
    (S.INTERRUPTED, S.SENT),  # in doubt: only a person may retry it
    (S.INTERRUPTED, S.SENDING),
    (S.UNSUBSCRIBED, S.QUEUED),  # an opt-out is never resent
    (S.SPAM_REPORT, S.QUEUED),
    (S.BOUNCED, S.SENDING),  # a resend goes through the queue and its quota
    (S.BOUNCED, S.OPENED),
    (S.SPAM_REPORT, S.UNSUBSCRIBED),
]


def item_in(status: QueueItemStatus) -> QueueItem:
    return QueueItem(mass_email_id=1, email="ann@example.com", status=status)


def test_the_table_is_exactly_the_designed_one() -> None:
    actual = {(current, new) for current, targets in ALLOWED.items() for new in targets}
    assert actual == EXPECTED_ALLOWED


@pytest.mark.parametrize(("current", "new"), sorted(EXPECTED_ALLOWED))
def test_every_allowed_transition_changes_the_status(
    current: QueueItemStatus, new: QueueItemStatus, clock: FixedClock
) -> None:
    item = item_in(current)
    assert allowed(current, new)
    assert transition(item, new, clock) is True
    assert item.status == new


@pytest.mark.parametrize(("current", "new"), REFUSED_SAMPLE)
def test_refused_transitions_raise_naming_both_states(
    current: QueueItemStatus, new: QueueItemStatus, clock: FixedClock
) -> None:
    item = item_in(current)
    assert not allowed(current, new)
    with pytest.raises(IllegalTransition) as raised:
        transition(item, new, clock)
    assert raised.value.current == current and raised.value.new == new
    assert str(current) in str(raised.value) and str(new) in str(raised.value)
    assert item.status == current


@pytest.mark.parametrize("status", list(S))
def test_staying_put_is_no_change_and_no_error(status: QueueItemStatus, clock: FixedClock) -> None:
    item = item_in(status)
    assert not allowed(status, status)
    assert transition(item, status, clock) is False
    assert item.status == status


@pytest.mark.parametrize("status", sorted(RESEND_FROM))
def test_a_resend_is_stamped_and_happens_only_once(
    status: QueueItemStatus, clock: FixedClock
) -> None:
    item = item_in(status)
    assert transition(item, S.QUEUED, clock) is True
    assert (item.status, item.resent_at) == (S.QUEUED, clock.now())

    # It goes round again and ends where it started: no second resend.
    transition(item, S.SENDING, clock)
    transition(item, status, clock)
    with pytest.raises(IllegalTransition, match="resent once already"):
        transition(item, S.QUEUED, clock)
    assert item.status == status


def test_entering_sent_stamps_the_time(clock: FixedClock) -> None:
    item = item_in(S.SENDING)
    transition(item, S.SENT, clock)
    assert item.sent_at == clock.now()


@pytest.mark.parametrize(
    ("current", "event", "expected"),
    [
        (S.SENT, S.OPENED, S.OPENED),
        (S.CLICKED, S.OPENED, S.CLICKED),  # an open after a click keeps "clicked"
        (S.CLICKED, S.CLICKED, S.CLICKED),
        (S.CLICKED, S.UNSUBSCRIBED, S.UNSUBSCRIBED),
        (S.BOUNCED, S.OPENED, S.BOUNCED),
        (S.UNSUBSCRIBED, S.CLICKED, S.UNSUBSCRIBED),
    ],
)
def test_engagement_upgrades_never_downgrade(
    current: QueueItemStatus,
    event: QueueItemStatus,
    expected: QueueItemStatus,
    clock: FixedClock,
) -> None:
    item = item_in(current)
    assert transition_if_allowed(item, event, clock) is (current != expected)
    assert item.status == expected


def test_every_status_is_stored_and_read_back(session: Session, clock: FixedClock) -> None:
    campaign = Campaign(name="Spring", created_at=clock.now())
    mass_email = MassEmail(campaign=campaign, name="Spring 1", created_at=clock.now())
    session.add(mass_email)
    session.flush()
    for status in S:
        session.add(
            QueueItem(
                mass_email_id=mass_email.id,
                email=f"{status}@example.com",
                status=status,
                created_at=clock.now(),
            )
        )
    session.commit()
    stored = session.scalars(select(QueueItem.status).order_by(QueueItem.id)).all()
    assert stored == list(S)


def test_a_transition_is_saved(session: Session, clock: FixedClock) -> None:
    campaign = Campaign(name="Spring", created_at=clock.now())
    mass_email = MassEmail(campaign=campaign, name="Spring 1", created_at=clock.now())
    session.add(mass_email)
    session.flush()
    item = QueueItem(
        mass_email_id=mass_email.id,
        email="ann@example.com",
        status=S.SENDING,
        created_at=clock.now(),
    )
    session.add(item)
    session.commit()
    clock.advance(timedelta(minutes=1))
    transition(item, S.SENT, clock)
    session.commit()
    session.expire_all()
    saved = session.get(QueueItem, item.id)
    assert saved is not None
    assert (saved.status, saved.sent_at, saved.open_count) == (S.SENT, clock.now(), 0)
