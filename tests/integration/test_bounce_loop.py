"""The whole bounce loop, every part real: a campaign is sent to the test
SMTP server (aiosmtpd); bounces, a complaint, an auto-reply, a forgery and
garbage are built from what that server received (the VERP envelope
senders) and appended to a real IMAP server (Dovecot); ``sluice bounces
poll --once`` reads them; the campaign log, the queue items, the contacts
and the suppression list show the results, and the mailbox's folders show
what was acknowledged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.cli import build_cli
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import (
    BounceMessage,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    QueueItemStatus,
)
from app.services import suppression
from tests.dovecot import DovecotServer
from tests.integration.test_bounce_processing import arf, autoreply, dsn, received
from tests.integration.test_dispatch import World, make_world
from tests.smtp_server import RunningServer, smtp_server


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    return make_world(app, session, clock, server)


def poll_once(world: World, imap_url: str) -> str:
    world.app.config["SLUICE_SETTINGS"] = replace(app_settings(world.app), imap_url=imap_url)
    world.app.config[CLOCK_CONFIG_KEY] = world.clock
    world.session.commit()
    result = CliRunner().invoke(
        build_cli(), ["bounces", "poll", "--once"], obj=ScriptInfo(create_app=lambda: world.app)
    )
    assert result.exit_code == 0, result.output
    world.session.expire_all()
    return result.output


def events_of(world: World, address: str) -> list[CampaignLogEvent]:
    item_id = world.item(address).id
    return list(
        world.session.scalars(
            select(CampaignLogEntry.event)
            .where(CampaignLogEntry.queue_item_id == item_id)
            .order_by(CampaignLogEntry.id)
        )
    )


def test_bounces_in_the_mailbox_reach_the_log_the_contacts_and_the_suppression_list(
    world: World, dovecot: DovecotServer
) -> None:
    addresses = [f"{name}@example.org" for name in ("ann", "bob", "cy", "dee", "eve")]
    world.start("Spring", addresses)
    world.tick()
    ann, bob, cy, dee, eve = (received(world, address) for address in addresses)
    assert all("+" in message.envelope_from for message in (ann, bob, cy, dee, eve))  # VERP
    forged_to = eve.envelope_from.replace(f"+{world.item(eve.recipients[0]).id}.", "+1.", 1)
    user = dovecot.new_user()
    dovecot.append(
        user,
        [
            dsn(ann, status="5.1.1", diagnostic="550 5.1.1 <ann@example.org>: User unknown"),
            dsn(
                bob,
                status="4.2.2",
                diagnostic="452 4.2.2 Mailbox full",
                message_id="<dsn-2@mx.example.org>",
            ),
            arf(cy),
            autoreply(dee),
            # Someone's forgery: eve's bounce sent to another item's VERP address.
            dsn(
                eve,
                status="5.1.1",
                diagnostic="550 5.1.1 User unknown",
                to=forged_to,
                message_id="<dsn-3@mx.example.org>",
            ),
            b"\x00\xff garbage that is no message at all",
        ],
    )

    output = poll_once(world, dovecot.url(user))

    assert world.item("ann@example.org").status is QueueItemStatus.BOUNCED
    assert CampaignLogEvent.BOUNCED_HARD in events_of(world, "ann@example.org")
    assert suppression.is_suppressed(world.session, "ann@example.org")
    ann_contact = world.session.scalar(select(Contact).where(Contact.email == "ann@example.org"))
    assert ann_contact is not None and ann_contact.email_status is EmailStatus.INVALID

    assert CampaignLogEvent.BOUNCED_SOFT in events_of(world, "bob@example.org")
    assert not suppression.is_suppressed(world.session, "bob@example.org")
    assert CampaignLogEvent.COMPLAINT in events_of(world, "cy@example.org")
    assert suppression.is_suppressed(world.session, "cy@example.org")
    assert CampaignLogEvent.AUTOREPLY in events_of(world, "dee@example.org")
    assert not suppression.is_suppressed(world.session, "dee@example.org")
    # The forgery (eve's bounce with another item's id under eve's MAC) is
    # applied to nobody: not to eve, and ann's hard bounce counts once below.
    assert world.item("eve@example.org").status is QueueItemStatus.SENT
    assert events_of(world, "eve@example.org") == [CampaignLogEvent.SENT]

    # Acknowledged only now: four done, the forgery and the garbage for a person.
    assert len(dovecot.bodies(user, "Processed")) == 4
    assert len(dovecot.bodies(user, "Unparsed")) == 2
    assert dovecot.bodies(user, "INBOX") == []
    assert "processed" in output

    # The same messages again (say, restored from a backup): counted once.
    recorded = world.session.scalar(select(func.count()).select_from(BounceMessage))
    dovecot.append(user, dovecot.bodies(user, "Processed"))
    poll_once(world, dovecot.url(user))
    assert world.session.scalar(select(func.count()).select_from(BounceMessage)) == recorded
    assert events_of(world, "ann@example.org").count(CampaignLogEvent.BOUNCED_HARD) == 1
    assert events_of(world, "bob@example.org").count(CampaignLogEvent.BOUNCED_SOFT) == 1
