"""Mass email status: the whole transition table, allowed and refused, the
start-time and resume rules, and a failure's reason in the campaign log."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import (
    Campaign,
    CampaignLogEntry,
    CampaignLogEvent,
    MassEmail,
    MassEmailStatus,
    QueueItem,
)
from app.services.mass_email_status import (
    ALLOWED,
    IllegalTransition,
    allowed_transitions,
    reopen_for_resend,
    resume_status,
    transition,
)

S = MassEmailStatus

EXPECTED_ALLOWED = {
    (S.DRAFT, S.PENDING),
    (S.DRAFT, S.CANCELED),
    (S.PENDING, S.DRAFT),
    (S.PENDING, S.IN_PROGRESS),
    (S.PENDING, S.PAUSED),
    (S.PENDING, S.CANCELED),
    (S.PENDING, S.FAILED),
    (S.IN_PROGRESS, S.COMPLETE),
    (S.IN_PROGRESS, S.PAUSED),
    (S.IN_PROGRESS, S.CANCELED),
    (S.IN_PROGRESS, S.FAILED),
    (S.PAUSED, S.PENDING),
    (S.PAUSED, S.IN_PROGRESS),
    (S.PAUSED, S.CANCELED),
    (S.PAUSED, S.FAILED),
}
ALL_PAIRS = list(itertools.product(S, S))


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS)
def test_the_table_allows_exactly_the_expected_transitions(
    current: MassEmailStatus, new: MassEmailStatus
) -> None:
    assert (new in allowed_transitions(current)) == ((current, new) in EXPECTED_ALLOWED)


def test_final_statuses_allow_nothing() -> None:
    for status in (S.COMPLETE, S.CANCELED, S.FAILED):
        assert ALLOWED[status] == frozenset()


def make_mass_email(session: Session, clock: FixedClock, status: MassEmailStatus) -> MassEmail:
    """A mass email put in ``status`` directly: a test fixture, not a change."""
    campaign = Campaign(name="Spring", created_at=clock.now())
    mass_email = MassEmail(
        campaign=campaign,
        name="Spring sale",
        status=status,
        created_at=clock.now(),
        start_at=clock.now() - timedelta(minutes=5),
    )
    session.add(mass_email)
    session.flush()
    return mass_email


def add_queue_item(session: Session, clock: FixedClock, mass_email: MassEmail) -> None:
    session.add(
        QueueItem(mass_email_id=mass_email.id, email="ann@example.com", created_at=clock.now())
    )
    session.flush()


def test_transition_applies_every_allowed_change_and_refuses_the_rest(
    session: Session, clock: FixedClock
) -> None:
    for current, new in ALL_PAIRS:
        mass_email = make_mass_email(session, clock, current)
        if current == S.PAUSED and new == S.IN_PROGRESS:
            add_queue_item(session, clock, mass_email)  # it had started
        if (current, new) in EXPECTED_ALLOWED:
            transition(mass_email, new, clock, reason="relay gone")
            assert mass_email.status == new
        else:
            with pytest.raises(IllegalTransition) as refused:
                transition(mass_email, new, clock, reason="relay gone")
            assert (refused.value.current, refused.value.new) == (current, new)
            assert mass_email.status == current
    session.commit()  # every status fits the CHECK constraint


def test_pending_starts_only_once_its_start_time_has_come(
    session: Session, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, clock, S.PENDING)
    mass_email.start_at = clock.now() + timedelta(hours=1)
    with pytest.raises(IllegalTransition, match="starts at"):
        transition(mass_email, S.IN_PROGRESS, clock)
    mass_email.start_at = None
    with pytest.raises(IllegalTransition, match="no start time"):
        transition(mass_email, S.IN_PROGRESS, clock)
    mass_email.start_at = clock.now()
    transition(mass_email, S.IN_PROGRESS, clock)
    assert mass_email.status == S.IN_PROGRESS


def test_paused_without_a_queue_resumes_to_pending_only(
    session: Session, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, clock, S.PENDING)
    transition(mass_email, S.PAUSED, clock)
    assert resume_status(mass_email) == S.PENDING
    with pytest.raises(IllegalTransition, match="never built"):
        transition(mass_email, S.IN_PROGRESS, clock)
    transition(mass_email, S.PENDING, clock)
    assert mass_email.status == S.PENDING


def test_paused_with_a_queue_resumes_to_in_progress_only(
    session: Session, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, clock, S.IN_PROGRESS)
    add_queue_item(session, clock, mass_email)
    transition(mass_email, S.PAUSED, clock)
    assert resume_status(mass_email) == S.IN_PROGRESS
    # Back to pending would build the queue again: everyone mailed twice.
    with pytest.raises(IllegalTransition, match="queue exists"):
        transition(mass_email, S.PENDING, clock)
    transition(mass_email, S.IN_PROGRESS, clock)
    assert mass_email.status == S.IN_PROGRESS


def test_a_failure_needs_a_reason_and_logs_it(session: Session, clock: FixedClock) -> None:
    mass_email = make_mass_email(session, clock, S.IN_PROGRESS)
    with pytest.raises(ValueError, match="reason"):
        transition(mass_email, S.FAILED, clock, reason="  ")
    assert mass_email.status == S.IN_PROGRESS

    transition(mass_email, S.FAILED, clock, reason="the relay refuses our credentials")
    session.commit()
    entry = session.scalars(select(CampaignLogEntry)).one()
    assert entry.mass_email_id == mass_email.id
    assert entry.queue_item_id is None
    assert entry.contact_id is None
    assert entry.event == CampaignLogEvent.FAILED
    assert entry.occurred_at == clock.now()
    assert entry.detail == {
        "scope": "mass_email",
        "reason": "the relay refuses our credentials",
        "from_status": "in_progress",
    }


def test_only_a_failure_writes_to_the_log(session: Session, clock: FixedClock) -> None:
    mass_email = make_mass_email(session, clock, S.PENDING)
    transition(mass_email, S.PAUSED, clock)
    transition(mass_email, S.CANCELED, clock)
    session.flush()
    assert session.scalars(select(CampaignLogEntry)).all() == []


def test_only_a_complete_mass_email_is_reopened_for_a_resend(
    session: Session, clock: FixedClock
) -> None:
    for status in S:
        mass_email = make_mass_email(session, clock, status)
        if status == S.COMPLETE:
            reopen_for_resend(mass_email)
            assert mass_email.status == S.IN_PROGRESS
        else:
            with pytest.raises(IllegalTransition, match="only a complete mass email"):
                reopen_for_resend(mass_email)
            assert mass_email.status == status
    deleted = make_mass_email(session, clock, S.COMPLETE)
    deleted.deleted_at = clock.now()
    with pytest.raises(IllegalTransition, match="it was deleted"):
        reopen_for_resend(deleted)
    assert deleted.status == S.COMPLETE
    session.commit()
