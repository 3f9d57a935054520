"""Resend after correction (SPEC §4): refusals, and the dispatcher
delivering to the corrected address exactly once, on both databases, with
a real SMTP server (aiosmtpd) and a fixed clock."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import (
    CampaignLogEvent,
    Contact,
    DomainGroup,
    EmailStatus,
    MassEmail,
    MassEmailStatus,
    QueueItem,
    QueueItemStatus,
)
from app.services.campaigns import (
    cancel_mass_email,
    delete_mass_email,
    pause_mass_email,
    resume_mass_email,
)
from app.services.contacts import ContactError, change_address, change_opt_out
from app.services.mass_email_status import transition as mass_email_transition
from app.services.queue_status import IllegalTransition, transition
from app.services.resend import ResendRefused, resend_after_correction
from tests.integration.test_dispatch import World, make_world, run_cli
from tests.smtp_server import RunningServer, smtp_server

Q = QueueItemStatus
M = MassEmailStatus
TYPO = "ann@exmaple.org"
FIXED = "ann@example.org"
USER_UNKNOWN = "550 5.1.1 User unknown"


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    return make_world(app, session, clock, server)


def contact_of(world: World, item: QueueItem) -> Contact:
    contact = world.session.get(Contact, item.contact_id)
    assert contact is not None
    return contact


def correct(world: World, item: QueueItem, address: str) -> None:
    change_address(world.session, contact_of(world, item), address, world.clock)
    world.session.commit()


def resend(world: World, item: QueueItem, who: str = "marketer@example.com") -> None:
    resend_after_correction(world.session, item.id, world.clock, requested_by=who)
    world.session.commit()


def bounced_at_the_typo(world: World, *others: str) -> tuple[MassEmail, QueueItem]:
    """A mass email whose message to ``TYPO`` bounced at RCPT; complete."""
    world.server.handler.rcpt_replies[TYPO] = USER_UNKNOWN
    mass_email = world.start("March", [TYPO, *others])
    world.tick()
    item = world.item(TYPO)
    assert item.status == Q.BOUNCED
    assert contact_of(world, item).email_status == EmailStatus.INVALID
    return mass_email, item


def test_a_corrected_bounce_is_delivered_once_and_the_mass_email_completes_again(
    world: World,
) -> None:
    mass_email, item = bounced_at_the_typo(world, "bob@example.org")
    assert world.status_of(mass_email) == M.COMPLETE
    world.clock.advance(timedelta(hours=2))
    correct(world, item, FIXED)

    resend(world, item, who="Mara (marketing)")

    queued = world.item(FIXED)
    assert queued.id == item.id
    assert (queued.status, queued.resent_at, queued.attempts) == (Q.QUEUED, world.clock.now(), 0)
    assert (queued.bounce_kind, queued.last_code, queued.last_reply) == (None, None, "")
    assert world.status_of(mass_email) == M.IN_PROGRESS
    [entry] = world.log(CampaignLogEvent.RESENT)
    assert (entry.mass_email_id, entry.queue_item_id, entry.contact_id) == (
        mass_email.id,
        item.id,
        item.contact_id,
    )
    assert entry.occurred_at == world.clock.now()
    assert entry.detail == {
        "requested_by": "Mara (marketing)",
        "old_email": TYPO,
        "new_email": FIXED,
        "from_status": "bounced",
        "reopened_mass_email": True,
    }

    result = world.tick()

    assert (result.sent, result.completed) == (1, [mass_email.id])
    assert world.status_of(mass_email) == M.COMPLETE
    sent = world.item(FIXED)
    assert (sent.status, sent.attempts, sent.sent_at) == (Q.SENT, 1, world.clock.now())
    assert world.received() == Counter({"bob@example.org": 1, FIXED: 1})
    assert world.tick().claimed == 0  # and never again
    assert world.received()[FIXED] == 1
    # Both attempts stay in the ledger: the quota never forgets.
    outcomes = [(a.outcome, a.code) for a in world.attempts_of(FIXED)]
    assert outcomes == [("rejected_recipient", 550), ("accepted", 250)]


def test_a_recipient_is_resent_only_once(world: World) -> None:
    mass_email, item = bounced_at_the_typo(world)
    correct(world, item, "ann@exampel.org")  # a second typo
    world.server.handler.rcpt_replies["ann@exampel.org"] = USER_UNKNOWN
    resend(world, item)
    world.tick()
    assert world.item("ann@exampel.org").status == Q.BOUNCED
    correct(world, item, FIXED)

    with pytest.raises(ResendRefused, match="resent once already"):
        resend(world, item)

    world.session.rollback()
    # The state machine refuses it too, whoever asks.
    again = world.item("ann@exampel.org")
    with pytest.raises(IllegalTransition, match="resent once already"):
        transition(again, Q.QUEUED, world.clock)
    world.session.rollback()
    assert world.item("ann@exampel.org").status == Q.BOUNCED
    assert len(world.log(CampaignLogEvent.RESENT)) == 1
    assert world.status_of(mass_email) == M.COMPLETE
    assert FIXED not in world.received()


def test_a_sent_item_is_never_resent(world: World) -> None:
    world.start("March", ["bob@example.org"])
    world.tick()
    item = world.item("bob@example.org")
    correct(world, item, "robert@example.org")

    with pytest.raises(ResendRefused, match="is sent: only a recipient that bounced"):
        resend(world, item)


@pytest.mark.parametrize("same", [TYPO, TYPO.upper().replace("EXMAPLE.ORG", "exmaple.org")])
def test_an_address_not_corrected_is_refused(world: World, same: str) -> None:
    _, item = bounced_at_the_typo(world)
    if same != TYPO:
        correct(world, item, same)  # only the case of the local part changed

    with pytest.raises(ResendRefused, match="the address was not corrected"):
        resend(world, item)


def test_a_corrected_address_marked_invalid_again_is_refused(world: World) -> None:
    _, item = bounced_at_the_typo(world)
    correct(world, item, FIXED)
    contact = contact_of(world, item)
    contact.email_status = EmailStatus.INVALID
    contact.email_status_reason = "550 mailbox disabled"
    world.session.commit()

    with pytest.raises(ResendRefused, match="is marked invalid: 550 mailbox disabled"):
        resend(world, item)


def test_a_contact_who_opted_out_is_refused(world: World) -> None:
    _, item = bounced_at_the_typo(world)
    correct(world, item, FIXED)
    change_opt_out(world.session, contact_of(world, item), True, "admin", world.clock)
    world.session.commit()

    with pytest.raises(ResendRefused, match="opted out of mass email"):
        resend(world, item)


def test_a_deleted_contact_is_refused(world: World) -> None:
    _, item = bounced_at_the_typo(world)
    world.session.delete(contact_of(world, item))
    world.session.commit()

    with pytest.raises(ResendRefused, match="its contact was deleted"):
        resend(world, item)


def test_an_address_already_a_recipient_of_the_mass_email_is_refused(world: World) -> None:
    _, item = bounced_at_the_typo(world, FIXED)
    bob = world.item(FIXED)
    correct(world, bob, "bob@example.org")  # the other contact moved on
    correct(world, item, FIXED)  # and the typo is corrected to the old address

    with pytest.raises(ResendRefused, match=f"already a recipient of this mass email.*{bob.id}"):
        resend(world, item)


@pytest.mark.parametrize(
    ("ending", "expected"),
    [("cancel", "is canceled"), ("fail", "is failed"), ("delete", "was deleted")],
)
def test_a_canceled_failed_or_deleted_mass_email_is_refused(
    world: World, ending: str, expected: str
) -> None:
    world.set(batch_size=1)
    world.server.handler.rcpt_replies[TYPO] = USER_UNKNOWN
    mass_email = world.start("March", [TYPO, "bob@example.org"])
    world.tick()  # the typo bounces; bob is still queued
    item = world.item(TYPO)
    if ending == "cancel":
        cancel_mass_email(world.session, mass_email, world.clock)
    elif ending == "fail":
        mass_email_transition(mass_email, M.FAILED, world.clock, reason="relay gone")
    else:
        delete_mass_email(world.session, mass_email, world.clock)
    world.session.commit()
    correct(world, item, FIXED)

    with pytest.raises(ResendRefused, match=expected):
        resend(world, item)


def test_who_asks_must_be_named_and_the_item_must_exist(world: World) -> None:
    _, item = bounced_at_the_typo(world)
    correct(world, item, FIXED)

    with pytest.raises(ResendRefused, match="requested_by"):
        resend(world, item, who="  ")
    with pytest.raises(ResendRefused, match="no queue item with id 999"):
        resend_after_correction(world.session, 999, world.clock, requested_by="me")


def test_a_refusal_changes_nothing(world: World) -> None:
    mass_email, item = bounced_at_the_typo(world)

    with pytest.raises(ResendRefused):
        resend(world, item)
    world.session.rollback()

    unchanged = world.item(TYPO)
    assert (unchanged.status, unchanged.resent_at, unchanged.last_code) == (Q.BOUNCED, None, 550)
    assert world.status_of(mass_email) == M.COMPLETE
    assert world.log(CampaignLogEvent.RESENT) == []


def test_an_error_for_a_missing_address_is_resent_once_one_is_given(world: World) -> None:
    world.set(batch_size=1)
    mass_email = world.start("March", ["bob@example.org", "carl@example.org", "dan@example.org"])
    contact = world.session.scalar(select(Contact).where(Contact.email == "carl@example.org"))
    assert contact is not None
    item = world.session.scalar(select(QueueItem).where(QueueItem.contact_id == contact.id))
    assert item is not None
    # As the queue build leaves a contact without an address.
    item.status, item.email, item.skip_reason = Q.ERROR, "", "no email address"
    world.session.commit()
    world.tick()  # bob; dan is still queued, so the mass email is in progress
    correct(world, item, "carl.new@example.org")

    resend(world, item)
    world.tick()
    world.tick()

    assert world.item("carl.new@example.org").status == Q.SENT
    assert world.received() == Counter(
        {"bob@example.org": 1, "carl.new@example.org": 1, "dan@example.org": 1}
    )
    assert world.status_of(mass_email) == M.COMPLETE
    [entry] = world.log(CampaignLogEvent.RESENT)
    assert (entry.detail["old_email"], entry.detail["reopened_mass_email"]) == ("", False)


def test_a_failed_item_is_resent_and_a_paused_mass_email_sends_it_on_resume(
    world: World,
) -> None:
    world.set(max_attempts=1)
    world.server.handler.rcpt_replies[TYPO] = "450 4.1.2 Domain not found, try later"
    mass_email = world.start("March", [TYPO, "bob@example.org", "cat@example.org"])
    world.set(batch_size=2)
    world.tick()
    item = world.item(TYPO)
    assert item.status == Q.FAILED
    pause_mass_email(world.session, mass_email, world.clock)
    world.session.commit()
    correct(world, item, FIXED)

    resend(world, item)
    assert world.tick().claimed == 0  # paused: it waits
    resume_mass_email(world.session, mass_email, world.clock)
    world.session.commit()
    world.tick()

    assert world.item(FIXED).status == Q.SENT
    assert world.received()[FIXED] == 1
    assert world.status_of(mass_email) == M.COMPLETE


def test_a_dropped_item_is_resent(world: World) -> None:
    mass_email = world.start("March", [TYPO])
    item = world.item(TYPO)
    item.status, item.skip_reason = Q.DROPPED, "the address is suppressed"  # fixture
    world.session.commit()
    world.tick()
    correct(world, item, FIXED)

    resend(world, item)
    world.tick()

    assert world.item(FIXED).status == Q.SENT
    assert world.status_of(mass_email) == M.COMPLETE


def test_change_address_refuses_a_taken_or_unchanged_address(world: World) -> None:
    _, item = bounced_at_the_typo(world, "bob@example.org")
    contact = contact_of(world, item)

    with pytest.raises(
        ContactError, match=re.escape("another contact already has BOB@example.org")
    ):
        change_address(world.session, contact, "BOB@example.org", world.clock)
    with pytest.raises(ContactError, match=re.escape("already ann@exmaple.org")):
        change_address(world.session, contact, " ann@EXMAPLE.org ", world.clock)


def test_queue_resend_from_the_command_line(world: World) -> None:
    mass_email, item = bounced_at_the_typo(world)

    refused = run_cli(world, "queue", "resend", str(item.id))
    changed = run_cli(world, "contacts", "change-address", TYPO, FIXED)
    result = run_cli(world, "queue", "resend", str(item.id), "--by", "Mara")

    assert refused.exit_code == 1 and "the address was not corrected" in refused.output
    assert changed.exit_code == 0, changed.output
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [
        f"Queue item {item.id} of mass email {mass_email.id} is queued again for {FIXED} "
        f"(was {TYPO}).",
        f"Mass email {mass_email.id} was complete and is in progress again until it is sent.",
    ]
    [entry] = world.log(CampaignLogEvent.RESENT)
    assert entry.detail["requested_by"] == "Mara"
    assert run_cli(world, "dispatch", "--once").exit_code == 0
    assert world.received() == Counter({FIXED: 1})


def test_change_address_from_the_command_line_names_what_is_wrong(world: World) -> None:
    bounced_at_the_typo(world, "bob@example.org")

    unknown = run_cli(world, "contacts", "change-address", "nobody@example.org", FIXED)
    invalid = run_cli(world, "contacts", "change-address", TYPO, "ann@")
    taken = run_cli(world, "contacts", "change-address", TYPO, "bob@example.org")

    assert unknown.exit_code == 1 and "no contact with address 'nobody@example.org'" in (
        unknown.output
    )
    assert invalid.exit_code == 1 and "'ann@' is not a valid address" in invalid.output
    assert taken.exit_code == 1 and "another contact already has bob@example.org" in taken.output
    assert world.item(TYPO).status == Q.BOUNCED


def test_a_resent_item_is_paced_in_its_new_address_domain_group(world: World) -> None:
    world.server.handler.rcpt_replies["ann@gmial.com"] = USER_UNKNOWN
    world.start("March", ["ann@gmial.com"])
    world.tick()
    item = world.item("ann@gmial.com")
    assert (item.status, item.domain_group) == (Q.BOUNCED, DomainGroup.OTHER)
    correct(world, item, "ann@gmail.com")

    resend(world, item)

    assert world.item("ann@gmail.com").domain_group == DomainGroup.GMAIL
