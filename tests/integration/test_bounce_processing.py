"""Returned messages processed end to end (``bounces.process_message``): a
campaign is sent to a real SMTP server (aiosmtpd), and the bounces are
built from what the server received (the VERP envelope sender, the
message's own headers), as a remote mail system would build them; then
read by the real parser (``bounce.read``) and applied."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import (
    BounceKind,
    BounceMessage,
    CampaignLogEntry,
    CampaignLogEvent,
    Contact,
    EmailStatus,
    MessageOutcome,
    QueueItemStatus,
    SuppressionReason,
)
from app.services import suppression
from app.services.bounces import ProcessedMessage, process_message
from app.services.tokens import LinkSigner
from bounce.report import ReportKind
from tests.conftest import TEST_SECRET_KEY
from tests.integration.test_dispatch import World, make_world
from tests.smtp_server import ReceivedMessage, RunningServer, smtp_server

Q = QueueItemStatus
OUT = MessageOutcome


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock, server: RunningServer) -> World:
    return make_world(app, session, clock, server)


def process(world: World, raw: bytes) -> ProcessedMessage:
    """What the poller does for one message: process, then commit."""
    result = process_message(
        world.session,
        raw,
        clock=world.clock,
        secret_key=TEST_SECRET_KEY,
        settings=app_settings(world.app),
    )
    world.session.commit()
    return result


def received(world: World, address: str) -> ReceivedMessage:
    [message] = [m for m in world.server.handler.messages if m.recipients == [address]]
    return message


def original_headers(message: ReceivedMessage, *, return_path: bool = False) -> str:
    """The sent message's header block as a remote system quotes it."""
    head = message.data.split(b"\r\n\r\n", 1)[0].decode()
    if return_path:  # added at final delivery (RFC 5321 §4.4)
        head = f"Return-Path: <{message.envelope_from}>\r\n" + head
    return head


def dsn(
    message: ReceivedMessage,
    *,
    status: str,
    diagnostic: str,
    action: str = "failed",
    to: str | None = None,
    message_id: str = "<dsn-1@mx.example.org>",
) -> bytes:
    """An RFC 3464 delivery status notification about ``message``, sent to
    its envelope sender (RFC 5321 §4.5.5), as Postfix writes one."""
    recipient = message.recipients[0]
    return (
        f"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        f"To: {to or message.envelope_from}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {message_id}\r\n"
        f"Date: Mon, 2 Mar 2026 09:05:00 +0000\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        f"\r\n"
        f"--B\r\n"
        f"Content-Type: text/plain\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not\r\n"
        f"be delivered to one or more recipients.\r\n\r\n"
        f"<{recipient}>: {diagnostic}\r\n"
        f"--B\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.org\r\n"
        f"Arrival-Date: Mon, 2 Mar 2026 09:00:00 +0000\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Remote-MTA: dns; in.example.org\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        f"--B\r\n"
        f"Content-Type: text/rfc822-headers\r\n\r\n"
        f"{original_headers(message)}\r\n"
        f"--B--\r\n"
    ).encode()


def arf(message: ReceivedMessage) -> bytes:
    """An RFC 5965 feedback report: the recipient pressed "this is spam"."""
    recipient = message.recipients[0]
    return (
        f"From: feedback@fbl.example.net\r\n"
        f"To: fbl@bounce.example.com\r\n"
        f"Subject: FW: spam report\r\n"
        f"Message-ID: <arf-1@fbl.example.net>\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        f"\r\n"
        f"--F\r\n"
        f"Content-Type: text/plain\r\n\r\n"
        f"This is an email abuse report.\r\n"
        f"--F\r\n"
        f"Content-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\n"
        f"User-Agent: ExampleFBL/1.0\r\n"
        f"Version: 1\r\n"
        f"Original-Rcpt-To: {recipient}\r\n"
        f"--F\r\n"
        f"Content-Type: text/rfc822-headers\r\n\r\n"
        f"{original_headers(message, return_path=True)}\r\n"
        f"--F--\r\n"
    ).encode()


def autoreply(message: ReceivedMessage) -> bytes:
    """An out-of-office reply, sent to the return path (RFC 3834 §4)."""
    return (
        f"From: {message.recipients[0]}\r\n"
        f"To: {message.envelope_from}\r\n"
        f"Subject: Out of office: Spring news\r\n"
        f"Message-ID: <ooo-1@example.org>\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"\r\n"
        f"I am out of the office until Monday.\r\n"
    ).encode()


def log_of(world: World, event: CampaignLogEvent) -> list[CampaignLogEntry]:
    world.session.expire_all()
    return world.log(event)


def test_bounces_of_a_sent_campaign_are_applied_to_the_right_items(world: World) -> None:
    world.start(
        "March", ["ann@example.org", "bob@example.org", "carol@example.org", "dan@example.org"]
    )
    world.tick()
    ann, bob = received(world, "ann@example.org"), received(world, "bob@example.org")
    carol, dan = received(world, "carol@example.org"), received(world, "dan@example.org")

    hard = process(world, dsn(ann, status="5.1.1", diagnostic="550 5.1.1 User unknown"))
    soft = process(
        world,
        dsn(
            bob,
            status="4.2.2",
            diagnostic="452 4.2.2 Mailbox full",
            message_id="<dsn-2@mx.example.org>",
        ),
    )
    complaint = process(world, arf(carol))
    reply = process(world, autoreply(dan))

    assert [r.outcome for r in (hard, soft, complaint, reply)] == [OUT.APPLIED] * 4
    assert [r.kind for r in (hard, soft, complaint, reply)] == [
        ReportKind.HARD,
        ReportKind.SOFT,
        ReportKind.COMPLAINT,
        ReportKind.AUTOREPLY,
    ]
    assert [r.queue_item_id for r in (hard, soft, complaint, reply)] == [
        world.item(address).id
        for address in (
            "ann@example.org",
            "bob@example.org",
            "carol@example.org",
            "dan@example.org",
        )
    ]
    assert not any(r.keep_for_review for r in (hard, soft, complaint, reply))
    ann_item, bob_item = world.item("ann@example.org"), world.item("bob@example.org")
    assert (ann_item.status, ann_item.bounce_kind) == (Q.BOUNCED, BounceKind.HARD)
    assert (bob_item.status, bob_item.bounce_kind) == (Q.BOUNCED, BounceKind.SOFT)
    assert world.item("carol@example.org").status == Q.SPAM_REPORT
    assert world.item("dan@example.org").status == Q.SENT
    ann_contact = world.session.get(Contact, ann_item.contact_id)
    assert ann_contact is not None and ann_contact.email_status == EmailStatus.INVALID
    carol_contact = world.session.get(Contact, world.item("carol@example.org").contact_id)
    assert carol_contact is not None and carol_contact.opted_out
    reasons = {
        address: entry.reason
        for address in (
            "ann@example.org",
            "bob@example.org",
            "carol@example.org",
            "dan@example.org",
        )
        if (entry := suppression.find(world.session, address)) is not None
    }
    assert reasons == {
        "ann@example.org": SuppressionReason.HARD_BOUNCE,
        "carol@example.org": SuppressionReason.COMPLAINT,
    }
    [hard_log] = log_of(world, CampaignLogEvent.BOUNCED_HARD)
    assert (hard_log.detail["status"], hard_log.detail["reason"]) == ("5.1.1", "userunknown")
    assert "User unknown" in hard_log.detail["diagnostic"]
    [soft_log] = log_of(world, CampaignLogEvent.BOUNCED_SOFT)
    assert soft_log.detail["status"] == "4.2.2"
    assert [row.queue_item_id for row in log_of(world, CampaignLogEvent.COMPLAINT)] == [
        complaint.queue_item_id
    ]
    assert [row.queue_item_id for row in log_of(world, CampaignLogEvent.AUTOREPLY)] == [
        reply.queue_item_id
    ]
    outcomes = world.session.scalars(select(BounceMessage.outcome).order_by(BounceMessage.id))
    assert list(outcomes) == [OUT.APPLIED] * 4


def test_a_message_processed_twice_is_counted_once(world: World) -> None:
    world.start("March", ["ann@example.org"])
    world.tick()
    bounce = dsn(received(world, "ann@example.org"), status="4.2.2", diagnostic="452 Mailbox full")

    first = process(world, bounce)
    again = process(world, bounce)  # the poller died before moving it
    # The same bounce re-sent by a second relay: another message, the same
    # bounce of the same item: still applied once.
    relayed = process(world, bounce.replace(b"<dsn-1@", b"<dsn-relayed@"))

    assert (first.outcome, again.outcome, relayed.outcome) == (
        OUT.APPLIED,
        OUT.DUPLICATE,
        OUT.DUPLICATE,
    )
    assert len(log_of(world, CampaignLogEvent.BOUNCED_SOFT)) == 1
    assert world.session.scalar(select(func.count()).select_from(BounceMessage)) == 2


def test_a_forged_verp_address_is_counted_and_never_applied(world: World) -> None:
    world.start("March", ["ann@example.org", "bob@example.org"])
    world.tick()
    ann, bob = received(world, "ann@example.org"), received(world, "bob@example.org")
    # Someone knows Bob's item id and tries to make it bounce, with Ann's MAC.
    bob_item = world.item("bob@example.org").id
    forged_to = (
        f"bounces+{bob_item}.{ann.envelope_from.split('.')[1].split('@')[0]}@bounce.example.com"
    )

    result = process(world, dsn(bob, status="5.1.1", diagnostic="550 User unknown", to=forged_to))

    assert (result.outcome, result.keep_for_review, result.queue_item_id) == (
        OUT.FORGED,
        True,
        None,
    )
    assert "forged VERP address" in result.detail
    assert world.item("bob@example.org").status == Q.SENT
    assert not suppression.is_suppressed(world.session, "bob@example.org")
    assert (
        world.session.scalar(
            select(func.count())
            .select_from(BounceMessage)
            .where(BounceMessage.outcome == OUT.FORGED)
        )
        == 1
    )


def test_with_verp_off_the_returned_headers_match_only_the_bounced_recipient(
    world: World,
) -> None:
    world.set(verp_enabled=False)
    world.start("March", ["ann@example.org", "bob@example.org"])
    world.tick()
    ann, bob = received(world, "ann@example.org"), received(world, "bob@example.org")
    assert ann.envelope_from == "bounces@bounce.example.com"

    matched = process(world, dsn(ann, status="5.1.1", diagnostic="550 User unknown"))
    # Bob's headers in a bounce that names Ann: the unsigned header is not trusted.
    mixed = dsn(bob, status="5.1.1", diagnostic="550 User unknown", message_id="<dsn-9@x>")
    mixed = mixed.replace(b"bob@example.org", b"ann@example.org").replace(
        b"To: ann@example.org", b"To: bob@example.org"
    )
    mismatched = process(world, mixed)

    assert (matched.outcome, matched.queue_item_id) == (
        OUT.APPLIED,
        world.item("ann@example.org").id,
    )
    assert mismatched.outcome == OUT.UNMATCHED
    assert world.item("bob@example.org").status == Q.SENT


def test_a_mailto_unsubscribe_request_opts_the_contact_out(world: World) -> None:
    world.start("March", ["ann@example.org"])
    world.tick()
    message = message_from_bytes(received(world, "ann@example.org").data, policy=policy.default)
    mailto = str(message["List-Unsubscribe"]).split("<mailto:")[1].split("?")[0]
    request = (
        f"From: Ann <ann@example.org>\r\nTo: {mailto.upper()}\r\nSubject: unsubscribe\r\n"
        f"Message-ID: <u-1@example.org>\r\n\r\nunsubscribe\r\n"
    ).encode()

    token = mailto.split("unsubscribe-")[1].split("@")[0]
    altered = token[:-4] + ("aaaa" if token[-4:] != "aaaa" else "bbbb")
    result = process(world, request)
    forged = process(
        world,
        request.replace(b"<u-1@", b"<u-2@").replace(token.upper().encode(), altered.encode()),
    )

    assert (result.outcome, result.queue_item_id) == (
        OUT.UNSUBSCRIBED,
        world.item("ann@example.org").id,
    )
    contact = world.session.get(Contact, world.item("ann@example.org").contact_id)
    assert contact is not None and contact.opted_out and contact.opt_out_source == "mailto"
    [opt_out] = log_of(world, CampaignLogEvent.OPTED_OUT)
    assert opt_out.detail == {"source": "mailto"}
    assert forged.outcome == OUT.FORGED and forged.keep_for_review
    assert LinkSigner(TEST_SECRET_KEY).verify_mailto(altered) is None


def test_what_is_not_a_bounce_is_recorded_and_said_so(world: World) -> None:
    world.start("March", ["ann@example.org"])
    world.tick()
    ann = received(world, "ann@example.org")

    delivered = process(world, dsn(ann, status="2.0.0", diagnostic="250 OK", action="delivered"))
    person = process(
        world,
        b"From: someone@example.net\r\nTo: bounces@bounce.example.com\r\n"
        b"Subject: hello\r\nMessage-ID: <p-1@example.net>\r\n\r\nJust saying hi.\r\n",
    )
    anonymous = process(
        world,
        dsn(
            ann,
            status="5.1.1",
            diagnostic="550 User unknown",
            to="bounces@bounce.example.com",
            message_id="<dsn-5@x>",
        ).replace(b"X-Sluice-Queue-Item", b"X-Other"),
    )
    garbage = process(world, b"\x00\xff" * 5000)

    assert (delivered.outcome, person.outcome) == (OUT.NOT_A_BOUNCE, OUT.NOT_A_BOUNCE)
    assert (anonymous.outcome, anonymous.kind) == (OUT.UNMATCHED, ReportKind.HARD)
    assert (garbage.outcome, garbage.keep_for_review) == (OUT.UNRECOGNISED, True)
    assert "no header block" in garbage.detail
    assert world.item("ann@example.org").status == Q.SENT
    assert world.session.scalar(select(func.count()).select_from(BounceMessage)) == 4
