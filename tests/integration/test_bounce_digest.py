"""The daily bounce digest to a sender profile's point of contact: a
campaign is sent to the test SMTP server, bounces and a complaint are
applied, a suppressed address is dropped at queue build; the digest goes
through the same server to the profile's Reply-To address, once a day,
telling each thing once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import BounceDigestState, SuppressionReason
from app.services import suppression
from app.services.bounce_digest import MAX_LISTED, send_digests
from app.services.bounces import apply_report
from bounce.report import BounceReport, RecipientReport, ReportKind
from tests.integration.test_dispatch import SITE, World, make_world
from tests.smtp_server import RunningServer, smtp_server

POINT_OF_CONTACT = "team@example.com"  # make_world's sender profile's Reply-To


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    return make_world(app, session, clock, server)


def bounce(world: World, address: str, kind: ReportKind, status: str, diagnostic: str) -> None:
    item = world.item(address)
    failed = RecipientReport(address, "failed", status, diagnostic, kind=kind)
    report = BounceReport(
        is_bounce=kind is ReportKind.HARD,
        kind=kind,
        reason="userunknown" if kind is ReportKind.HARD else "feedback",
        recipient=address,
        status=status,
        diagnostic=diagnostic,
        recipients=(failed,),
        queue_item_id=item.id,
    )
    apply_report(world.session, report, clock=world.clock, source="test")
    world.session.commit()


def digests(world: World) -> list[EmailMessage]:
    found = []
    for message in world.server.handler.messages:
        if message.recipients == [POINT_OF_CONTACT]:
            parsed = message_from_bytes(message.data, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
    return found


def send(world: World) -> str:
    run = send_digests(
        world.session,
        world.transport,
        world.clock,
        site_url=SITE,
        bounce_address="bounces@bounce.example.com",
    )
    return run.describe()


def body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_the_point_of_contact_gets_one_digest_a_day_of_what_is_new(world: World) -> None:
    suppression.add(
        world.session, "dora@example.org", SuppressionReason.MANUAL, "asked us", world.clock
    )
    world.session.commit()
    world.start(
        "Spring", ["ann@example.org", "bob@example.org", "cy@example.org", "dora@example.org"]
    )
    world.tick()
    world.clock.advance(timedelta(hours=1))
    bounce(world, "ann@example.org", ReportKind.HARD, "5.1.1", "550 5.1.1 User unknown")
    bounce(world, "cy@example.org", ReportKind.COMPLAINT, "", "")

    assert send(world) == "digests sent 1"

    [digest] = digests(world)
    assert digest["Subject"] == "Sluice digest for News: 1 hard bounces, 1 complaints, 1 drops"
    assert digest["Auto-Submitted"] == "auto-generated"
    text = body(digest)
    assert 'Campaign "Spring", mass email "Spring"' in text
    ann = world.item("ann@example.org")
    assert (
        f"ann@example.org (5.1.1 550 5.1.1 User unknown) {SITE}/contacts/{ann.contact_id}" in text
    )
    assert "cy@example.org" in text and "dora@example.org" in text
    assert "bob@example.org" not in text  # delivered: nothing to tell

    # Within the day: nothing more, even with something new.
    world.clock.advance(timedelta(hours=3))
    bounce(world, "bob@example.org", ReportKind.HARD, "5.1.1", "550 5.1.1 No such user")
    assert send(world) == "digests sent 0"
    assert len(digests(world)) == 1

    # A day after the first: only what is new since it.
    world.clock.advance(timedelta(hours=21))
    assert send(world) == "digests sent 1"
    later = body(digests(world)[1])
    assert "bob@example.org" in later
    assert "ann@example.org" not in later and "cy@example.org" not in later

    # Nothing new a day later: no mail at all.
    world.clock.advance(timedelta(days=1))
    assert send(world) == "digests sent 0"
    assert len(digests(world)) == 2


def test_a_refused_digest_is_sent_again_next_time(world: World) -> None:
    world.start("Spring", ["ann@example.org"])
    world.tick()
    bounce(world, "ann@example.org", ReportKind.HARD, "5.1.1", "550 5.1.1 User unknown")
    world.server.handler.rcpt_replies[POINT_OF_CONTACT] = "452 4.2.2 Mailbox full"

    assert send(world).startswith("digests sent 0, not sent 1: News: 452")
    assert world.session.get(BounceDigestState, world.profile.id) is None

    world.server.handler.rcpt_replies.pop(POINT_OF_CONTACT)
    world.clock.advance(timedelta(minutes=60))
    assert send(world) == "digests sent 1"
    assert "ann@example.org" in body(digests(world)[0])


def test_a_long_list_is_cut_and_counted(world: World) -> None:
    addresses = [f"p{number:03d}@example.org" for number in range(MAX_LISTED + 5)]
    world.start("Big", addresses)
    world.set(batch_size=len(addresses))
    world.tick()
    for address in addresses:
        bounce(world, address, ReportKind.HARD, "5.1.1", "550 5.1.1 User unknown")

    send(world)

    text = body(digests(world)[0])
    assert text.count("@example.org (5.1.1") == MAX_LISTED
    assert "… and 5 more" in text


def test_a_profile_without_a_point_of_contact_gets_none(world: World) -> None:
    world.profile.reply_to_address = ""
    world.session.commit()
    world.start("Spring", ["ann@example.org"])
    world.tick()
    bounce(world, "ann@example.org", ReportKind.HARD, "5.1.1", "550 5.1.1 User unknown")

    assert send(world) == "digests sent 0"
    assert digests(world) == []
