"""VERP and suppression against a real SMTP server (aiosmtpd): every
campaign message leaves with a return path that names its queue item, and
an address refused at RCPT is suppressed so a later mass email drops it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import (
    Contact,
    MassEmail,
    QueueItem,
    QueueItemStatus,
    SuppressionReason,
    TargetListMember,
)
from app.services import suppression
from app.services.campaigns import add_mass_email, create_campaign, schedule_mass_email
from app.services.messages import send_test
from app.services.queue_build import build_queue
from app.services.return_path import verp_codec
from app.services.target_lists import create_target_list
from app.services.transport import SmtpSettings, SmtpTransport
from bounce.verp import VerpKind
from tests.conftest import TEST_SECRET_KEY, add_contact
from tests.integration.test_dispatch import World, make_world
from tests.smtp_server import RunningServer, smtp_server

Q = QueueItemStatus


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    return make_world(app, session, clock, server)


def envelopes(world: World) -> dict[str, str]:
    """Recipient → the envelope sender the server received."""
    return {
        message.recipients[0]: message.envelope_from for message in world.server.handler.messages
    }


def test_every_campaign_message_has_a_verp_return_path_naming_its_item(world: World) -> None:
    addresses = [f"reader{n}@example.org" for n in range(6)]
    world.start("March", addresses)

    world.tick()

    codec = verp_codec("bounces@bounce.example.com", "", TEST_SECRET_KEY, enabled=True)
    assert codec is not None
    received = envelopes(world)
    assert sorted(received) == addresses
    for address, envelope_from in received.items():
        assert envelope_from.startswith("bounces+") and envelope_from.endswith(
            "@bounce.example.com"
        )
        decoded = codec.decode(envelope_from)
        assert decoded.kind is VerpKind.VALID
        assert decoded.item_id == world.item(address).id
    assert len(set(received.values())) == len(addresses)


def test_the_bounce_domain_setting_moves_the_return_path(world: World) -> None:
    world.set(bounce_domain="returns.example.net")
    world.start("March", ["ann@example.org"])

    world.tick()

    [envelope_from] = envelopes(world).values()
    assert envelope_from.startswith(f"bounces+{world.item('ann@example.org').id}.")
    assert envelope_from.endswith("@returns.example.net")


def test_with_verp_off_the_plain_bounce_address_is_the_return_path(world: World) -> None:
    world.set(verp_enabled=False)
    world.start("March", ["ann@example.org", "bob@example.org"])

    world.tick()

    assert set(envelopes(world).values()) == {"bounces@bounce.example.com"}


def test_a_test_message_keeps_the_plain_bounce_address(world: World) -> None:
    mass_email = world.start("March", ["ann@example.org"], build=False)
    transport = SmtpTransport(
        SmtpSettings(host=world.server.host, port=world.server.port, timeout=5)
    )

    result = send_test(
        world.session,
        mass_email,
        "tester@example.com",
        None,
        transport,
        clock=world.clock,
        runtime=world.runtime,
        settings=app_settings(world.app),
        secret_key=TEST_SECRET_KEY,
        dkim_key=None,
    )

    assert result.accepted
    assert envelopes(world) == {"tester@example.com": "bounces@bounce.example.com"}


def test_a_5xx_at_rcpt_suppresses_the_address_and_a_later_mass_email_drops_it(
    world: World,
) -> None:
    world.start("March", ["gone@example.org", "bob@example.org"])
    world.server.handler.rcpt_replies["gone@example.org"] = "550 5.1.1 User unknown"

    assert world.tick().bounced == 1

    entry = suppression.find(world.session, "gone@example.org")
    assert entry is not None
    assert (entry.reason, entry.source) == (
        SuppressionReason.HARD_BOUNCE,
        "smtp reply at send time",
    )
    # The contact is marked invalid, but the list outlives it: deleted and
    # imported again later, the address comes back as a new, valid contact.
    # The server would take it now; the suppression keeps it out.
    gone = world.session.scalar(select(Contact).where(Contact.email == "gone@example.org"))
    world.session.delete(gone)
    world.session.commit()
    add_contact(world.session, world.clock, "gone@example.org")
    del world.server.handler.rcpt_replies["gone@example.org"]
    before = len(world.server.handler.messages)
    april = mass_email_to_existing(world, "April", ["gone@example.org", "bob@example.org"])
    world.tick()

    world.session.expire_all()
    items = {
        item.email: (item.status, item.skip_reason)
        for item in world.session.scalars(
            select(QueueItem).where(QueueItem.mass_email_id == april.id)
        )
    }
    assert items == {
        "gone@example.org": (Q.DROPPED, "suppressed address"),
        "bob@example.org": (Q.SENT, ""),
    }
    assert [m.recipients for m in world.server.handler.messages[before:]] == [["bob@example.org"]]


def mass_email_to_existing(world: World, name: str, addresses: list[str]) -> MassEmail:
    """A mass email to contacts that exist already, scheduled and its queue
    built (``World.start`` creates new contacts)."""
    session, clock = world.session, world.clock
    targets = create_target_list(session, f"{name} list", "", clock)
    contact_ids = session.scalars(select(Contact.id).where(Contact.email.in_(addresses)))
    for contact_id in contact_ids:
        session.add(
            TargetListMember(target_list_id=targets.id, contact_id=contact_id, added_at=clock.now())
        )
    campaign = create_campaign(
        session,
        name=name,
        type="newsletter",
        target_list_ids=[targets.id],
        excluding_list_ids=[],
        sender_profile_id=world.profile.id,
        clock=clock,
    )
    mass_email = add_mass_email(
        session, campaign, template_id=world.template.id, name=name, clock=clock
    )
    schedule_mass_email(
        session,
        mass_email,
        start_at=None,
        can_spam_confirmed=True,
        runtime=world.runtime,
        settings=app_settings(world.app),
        secret_key=TEST_SECRET_KEY,
        clock=clock,
    )
    build_queue(session, mass_email, clock)
    session.commit()
    return mass_email
