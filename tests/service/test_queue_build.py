"""Queue building: the audience resolved once into queue items, with the
status of each category, on SQLite and PostgreSQL; ``activate_due`` starts
the due pending mass emails."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.extensions import db
from app.models import (
    Campaign,
    CampaignLogEntry,
    Contact,
    EmailStatus,
    EmailTemplate,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
    SenderProfile,
    TargetList,
)
from app.services.audience import AudienceCategory, audience_select
from app.services.campaigns import (
    TemplateInput,
    add_mass_email,
    create_campaign,
    create_sender_profile,
    pause_mass_email,
    resume_mass_email,
    save_template,
    schedule_mass_email,
)
from app.services.contacts import change_opt_out
from app.services.mass_email_status import IllegalTransition
from app.services.queue_build import (
    QueueBuildError,
    activate_due,
    build_queue,
    due_mass_email_ids,
    status_counts,
)
from app.services.runtime_settings import get_runtime_settings, seed_runtime_settings
from app.services.target_lists import add_members, create_target_list
from tests.conftest import TEST_SECRET_KEY, add_contact, postgresql_only
from tests.service.test_audience import World, hypothesis_settings, store, worlds

Q = QueueItemStatus
M = MassEmailStatus


# --- building data through the services ---------------------------------------------


@dataclass
class Scene:
    """Contacts by name, on a target list (``customers``) and an excluding
    list (``blocked``)."""

    contacts: dict[str, Contact]
    customers: TargetList
    blocked: TargetList
    # The objects, not their ids: add_mass_email expects the template loaded.
    profile: SenderProfile
    template: EmailTemplate


def no_address_contact(session: Session, clock: FixedClock) -> Contact:
    """A contact without an address: no service makes one, imports may."""
    contact = Contact(email=None, email_lower=None, created_at=clock.now(), updated_at=clock.now())
    session.add(contact)
    session.flush()
    return contact


def make_scene(session: Session, clock: FixedClock) -> Scene:
    contacts = {
        name: add_contact(session, clock, f"{name}@example.org", first_name=name.title())
        for name in ("ann", "bob", "cid", "dee", "eve")
    }
    change_opt_out(session, contacts["bob"], True, "link", clock)
    contacts["cid"].email_status = EmailStatus.INVALID
    contacts["cid"].email_status_reason = "550 5.1.1 mailbox unknown"
    contacts["nobody"] = no_address_contact(session, clock)
    customers = create_target_list(session, "Customers", "", clock)
    blocked = create_target_list(session, "Blocked", "", clock)
    add_members(session, customers, [contact.id for contact in contacts.values()], clock)
    add_members(session, blocked, [contacts["eve"].id], clock)
    profile = create_sender_profile(
        session, "News", "Example News", "news@example.com", "team@example.com"
    )
    template = save_template(
        session,
        TemplateInput(
            name="Spring",
            subject="Spring sale for {{ FIRST_NAME }}",
            body_html="<p>Hello {{ FIRST_NAME }}</p>",
            body_text=None,
            header_logo_url="",
            footer_html="",
        ),
        clock,
    )
    return Scene(contacts, customers, blocked, profile, template)


def make_mass_email(
    session: Session, scene: Scene, clock: FixedClock, name: str = "Spring campaign"
) -> MassEmail:
    campaign = create_campaign(
        session,
        name=name,
        type="newsletter",
        target_list_ids=[scene.customers.id],
        excluding_list_ids=[scene.blocked.id],
        sender_profile_id=scene.profile.id,
        clock=clock,
    )
    return add_mass_email(session, campaign, template_id=scene.template.id, name=name, clock=clock)


def schedule(
    app: Flask,
    session: Session,
    clock: FixedClock,
    mass_email: MassEmail,
    start_in: timedelta | None = None,
) -> None:
    """Schedule through the service (pre-flight, snapshot); now by default."""
    seed_runtime_settings(session, app_settings(app), clock)
    schedule_mass_email(
        session,
        mass_email,
        start_at=None if start_in is None else clock.now() + start_in,
        can_spam_confirmed=True,
        runtime=get_runtime_settings(session),
        settings=app_settings(app),
        secret_key=TEST_SECRET_KEY,
        clock=clock,
    )


def queue_rows(session: Session, mass_email_id: int) -> dict[int | None, tuple[str, Q, str]]:
    """Contact id → (email, status, skip reason) of the mass email's queue."""
    items = session.scalars(select(QueueItem).where(QueueItem.mass_email_id == mass_email_id))
    return {item.contact_id: (item.email, item.status, item.skip_reason) for item in items}


def count_items(session: Session, mass_email_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(QueueItem)
            .where(QueueItem.mass_email_id == mass_email_id)
        )
        or 0
    )


# --- build_queue -------------------------------------------------------------------


def test_each_category_gets_its_status_and_reason(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock)
    schedule(app, session, clock, mass_email)

    result = build_queue(session, mass_email, clock)
    session.commit()

    ids = {name: contact.id for name, contact in scene.contacts.items()}
    assert queue_rows(session, mass_email.id) == {
        ids["ann"]: ("ann@example.org", Q.QUEUED, ""),
        ids["bob"]: ("bob@example.org", Q.UNSUBSCRIBED, "opted out of mass email"),
        ids["cid"]: ("cid@example.org", Q.ERROR, "invalid address: 550 5.1.1 mailbox unknown"),
        ids["dee"]: ("dee@example.org", Q.QUEUED, ""),
        ids["nobody"]: ("", Q.ERROR, "no email address"),
    }  # eve is on the excluding list: no item at all
    assert result.inserted == 5
    assert dict(result.counts) == {Q.QUEUED: 2, Q.UNSUBSCRIBED: 1, Q.ERROR: 2}
    assert (result.queued, result.total) == (2, 5)
    assert mass_email.status == M.IN_PROGRESS
    assert mass_email.queue_built_at == clock.now()
    item = session.scalar(select(QueueItem).where(QueueItem.contact_id == ids["ann"]))
    assert item is not None
    assert (item.attempts, item.next_attempt_at, item.created_at) == (0, None, clock.now())
    assert (item.last_reply, item.claimed_by, item.lease_expires_at) == ("", None, None)


def test_a_second_build_inserts_nothing_even_after_the_lists_changed(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock)
    schedule(app, session, clock, mass_email)
    first = build_queue(session, mass_email, clock)
    session.commit()
    built_at = clock.now()

    clock.advance(timedelta(minutes=5))
    late = add_contact(session, clock, "late@example.org")
    add_members(session, scene.customers, [late.id], clock)
    again = build_queue(session, mass_email, clock)
    session.commit()

    assert (again.inserted, dict(again.counts)) == (0, dict(first.counts))
    assert count_items(session, mass_email.id) == 5
    assert mass_email.queue_built_at == built_at
    assert mass_email.status == M.IN_PROGRESS


def test_two_mass_emails_of_one_audience_each_get_their_queue(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    first = make_mass_email(session, scene, clock, "First")
    second = make_mass_email(session, scene, clock, "Second")
    for mass_email in (first, second):
        schedule(app, session, clock, mass_email)
        build_queue(session, mass_email, clock)
    session.commit()
    assert count_items(session, first.id) == count_items(session, second.id) == 5


def test_a_draft_has_no_snapshot_and_is_refused(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, make_scene(session, clock), clock)
    with pytest.raises(QueueBuildError, match="no content snapshot"):
        build_queue(session, mass_email, clock)
    assert count_items(session, mass_email.id) == 0


def test_a_mass_email_not_due_yet_is_refused(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, make_scene(session, clock), clock)
    schedule(app, session, clock, mass_email, start_in=timedelta(hours=1))
    with pytest.raises(IllegalTransition, match="it starts at"):
        build_queue(session, mass_email, clock)
    session.rollback()
    assert count_items(session, mass_email.id) == 0
    assert mass_email.queue_built_at is None


def test_an_empty_audience_builds_an_empty_queue_that_counts_as_started(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    mass_email = make_mass_email(session, scene, clock)
    schedule(app, session, clock, mass_email)
    # Everyone excluded after scheduling (the pre-flight refuses an empty audience).
    add_members(session, scene.blocked, [c.id for c in scene.contacts.values()], clock)
    result = build_queue(session, mass_email, clock)
    assert (result.inserted, result.total) == (0, 0)
    # Paused now, it resumes sending: pending would build the queue again.
    pause_mass_email(session, mass_email, clock)
    assert resume_mass_email(session, mass_email, clock) == M.IN_PROGRESS


# --- activate_due --------------------------------------------------------------------


def test_activate_due_starts_only_the_due_pending_mass_emails(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    due = make_mass_email(session, scene, clock, "Due")
    later = make_mass_email(session, scene, clock, "Later")
    draft = make_mass_email(session, scene, clock, "Draft")
    paused = make_mass_email(session, scene, clock, "Paused")
    schedule(app, session, clock, due)
    schedule(app, session, clock, later, start_in=timedelta(hours=2))
    schedule(app, session, clock, paused)
    pause_mass_email(session, paused, clock)
    session.commit()

    assert activate_due(session, clock) == [due.id]
    statuses = {m.name: m.status for m in session.scalars(select(MassEmail))}
    assert statuses == {
        "Due": M.IN_PROGRESS,
        "Later": M.PENDING,
        "Draft": M.DRAFT,
        "Paused": M.PAUSED,
    }
    assert [count_items(session, m.id) for m in (due, later, draft, paused)] == [5, 0, 0, 0]
    assert activate_due(session, clock) == []  # started once

    clock.advance(timedelta(hours=2))
    assert activate_due(session, clock) == [later.id]
    assert later.status == M.IN_PROGRESS
    assert count_items(session, later.id) == 5


@postgresql_only
def test_activate_due_skips_a_mass_email_another_runner_holds(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    scene = make_scene(session, clock)
    held = make_mass_email(session, scene, clock, "Held")
    free = make_mass_email(session, scene, clock, "Free")
    schedule(app, session, clock, held)
    schedule(app, session, clock, free)
    session.commit()

    other_runner = db.engine.connect()
    try:
        other_runner.execute(select(MassEmail.id).where(MassEmail.id == held.id).with_for_update())
        assert activate_due(session, clock) == [free.id]
        assert (held.status, count_items(session, held.id)) == (M.PENDING, 0)
    finally:
        other_runner.rollback()
        other_runner.close()
    assert activate_due(session, clock) == [held.id]


def test_activate_due_never_starts_again_what_another_runner_started_meanwhile(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, make_scene(session, clock), clock)
    schedule(app, session, clock, mass_email)
    session.commit()
    # Another runner is building the queue: flushed, not committed yet.
    other_runner = Session(db.engine)
    build_queue(other_runner, other_runner.get_one(MassEmail, mass_email.id), clock)

    def finish_the_other_build(*args: Any) -> None:
        # The other runner commits just before this one first writes (or
        # takes the write lock): whatever this one read earlier is stale.
        statement = str(args[2]).lstrip().upper()
        if statement.startswith(("BEGIN", "UPDATE", "INSERT")) and other_runner.in_transaction():
            other_runner.commit()

    event.listen(db.engine, "before_cursor_execute", finish_the_other_build)
    try:
        started = activate_due(session, FixedClock(clock.now() + timedelta(minutes=1)))
    finally:
        event.remove(db.engine, "before_cursor_execute", finish_the_other_build)
        other_runner.commit()
        other_runner.close()

    assert started == []
    session.expire_all()
    assert (mass_email.status, mass_email.queue_built_at) == (M.IN_PROGRESS, clock.now())
    assert count_items(session, mass_email.id) == 5


def test_activate_due_fails_a_pending_mass_email_without_a_snapshot(
    app: Flask, session: Session, clock: FixedClock
) -> None:
    mass_email = make_mass_email(session, make_scene(session, clock), clock)
    schedule(app, session, clock, mass_email)
    mass_email.subject = None  # a snapshot lost: the fixture breaks it on purpose
    session.commit()

    assert activate_due(session, clock) == []
    assert mass_email.status == M.FAILED
    log = session.scalar(select(CampaignLogEntry).where(CampaignLogEntry.queue_item_id.is_(None)))
    assert log is not None and "no content snapshot" in log.detail["reason"]
    assert due_mass_email_ids(session, clock) == []


# --- the set model: queue rows are the audience rows ---------------------------------

EXPECTED_STATUS = {
    AudienceCategory.RECIPIENT: (Q.QUEUED, ""),
    AudienceCategory.OPTED_OUT: (Q.UNSUBSCRIBED, "opted out of mass email"),
    AudienceCategory.INVALID_ADDRESS: (Q.ERROR, "invalid address"),
    AudienceCategory.NO_ADDRESS: (Q.ERROR, "no email address"),
}


def pending_mass_email(session: Session, world: World, clock: FixedClock) -> MassEmail:
    """A pending mass email on the world's lists, put there directly (a
    fixture: the content is never rendered here)."""
    campaign = Campaign(
        name="World",
        created_at=clock.now(),
        target_lists=[session.get_one(TargetList, list_id) for list_id in world.targets],
        excluding_lists=[session.get_one(TargetList, list_id) for list_id in world.excluding],
    )
    mass_email = MassEmail(
        campaign=campaign,
        name="World",
        status=M.PENDING,
        created_at=clock.now(),
        start_at=clock.now(),
        subject="Hello",
    )
    session.add(mass_email)
    session.flush()
    return mass_email


@hypothesis_settings
@given(world=worlds(unique_addresses=True))
def test_queue_rows_are_the_audience_rows_with_their_statuses(
    session: Session, clock: FixedClock, world: World
) -> None:
    session.rollback()  # hypothesis reuses the database: nothing is committed
    store(session, world)
    mass_email = pending_mass_email(session, world, clock)
    audience = session.execute(audience_select(world.targets, world.excluding)).all()

    result = build_queue(session, mass_email, clock)

    expected = {
        row.contact_id: (row.email or "", *EXPECTED_STATUS[AudienceCategory(row.category)])
        for row in audience
    }
    assert queue_rows(session, mass_email.id) == expected
    assert result.inserted == len(audience)
    assert status_counts(session, mass_email.id) == dict(result.counts)
    session.rollback()
