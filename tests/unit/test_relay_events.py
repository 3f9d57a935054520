"""Relays' delivery events read into facts: the payloads are the shapes the
providers document (SES notifications and event publishing, SendGrid's
event webhook, Mailgun's webhooks, Postmark's bounce and spam-complaint
webhooks)."""

from __future__ import annotations

import json

import pytest

from bounce.queue_ids import item_from_message_id as queue_item_from_message_id
from bounce.relay_events import (
    ProviderKind,
    RelayEvent,
    mailgun_events,
    postmark_events,
    relay_report,
    sendgrid_events,
    ses_events,
)
from bounce.report import ReportKind

OUR_MESSAGE_ID = "<q42.0123456789abcdef@news.example.com>"


def ses_bounce(
    bounce_type: str,
    sub_type: str,
    recipients: list[dict[str, str]],
    *,
    event_key: str = "notificationType",
) -> dict[str, object]:
    return {
        event_key: "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": sub_type,
            "bouncedRecipients": recipients,
            "timestamp": "2026-03-02T09:01:00.000Z",
            "feedbackId": "0102017e-feedback",
        },
        "mail": {
            "messageId": "0102017e-ses-id",
            "source": "bounces+42.abc@bounce.example.com",
            "destination": [r["emailAddress"] for r in recipients],
            "headers": [
                {"name": "X-Sluice-Queue-Item", "value": "42"},
                {"name": "Message-ID", "value": OUR_MESSAGE_ID},
            ],
            "commonHeaders": {"messageId": OUR_MESSAGE_ID},
        },
    }


def test_our_message_id_names_its_queue_item_and_nothing_else_does() -> None:
    assert queue_item_from_message_id(OUR_MESSAGE_ID) == 42
    assert queue_item_from_message_id("q42.0123456789abcdef@news.example.com") == 42
    for other in (
        None,
        "",
        "<42@example.com>",
        "<q42.xyz@example.com>",
        "<q99999999999999999999.0123456789abcdef@x>",
    ):
        assert queue_item_from_message_id(other) is None


def test_ses_permanent_bounce_per_recipient() -> None:
    batch = ses_events(
        json.dumps(
            ses_bounce(
                "Permanent",
                "General",
                [
                    {
                        "emailAddress": "jane@example.org",
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    },
                    {"emailAddress": "joe@example.org"},
                ],
            )
        )
    )
    assert [event.recipient for event in batch.events] == ["jane@example.org", "joe@example.org"]
    first = batch.events[0]
    assert first.provider_kind is ProviderKind.PERMANENT
    assert (first.status, first.diagnostic) == ("5.1.1", "smtp; 550 5.1.1 user unknown")
    assert (first.queue_item_header, first.message_id) == ("42", OUR_MESSAGE_ID)
    assert not first.address_invalid
    assert batch.events[1].status is None


def test_ses_event_publishing_and_address_level_sub_types() -> None:
    record = ses_bounce(
        "Permanent", "NoEmail", [{"emailAddress": "x@example.org"}], event_key="eventType"
    )
    (event,) = ses_events(record).events
    assert event.address_invalid and event.description == "SES bounce Permanent/NoEmail"
    (transient,) = ses_events(
        ses_bounce("Transient", "MailboxFull", [{"emailAddress": "x@example.org"}])
    ).events
    assert transient.provider_kind is ProviderKind.TEMPORARY and not transient.address_invalid


def test_ses_complaint_delivery_and_nonsense() -> None:
    complaint = {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": "c@example.org"}],
            "complaintFeedbackType": "abuse",
        },
        "mail": {"commonHeaders": {"messageId": OUR_MESSAGE_ID}},
    }
    (event,) = ses_events(complaint).events
    assert event.provider_kind is ProviderKind.COMPLAINT and event.recipient == "c@example.org"
    delivery = ses_events({"notificationType": "Delivery", "mail": {}})
    assert (delivery.events, delivery.ignored) == ([], 1)
    assert ses_events("not json").skipped == ["the SNS Message is not SES JSON"]
    assert ses_events([1, 2]).skipped == ["event 1: not a JSON object"]
    no_address = ses_bounce("Permanent", "General", [{"emailAddress": "not an address"}])
    assert ses_events(no_address).skipped == ["event 1: a bounced recipient has no address"]


def test_sendgrid_events_by_type() -> None:
    events = [
        {
            "event": "bounce",
            "type": "bounce",
            "email": "a@example.org",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account does not exist",
            "smtp-id": OUR_MESSAGE_ID,
            "bounce_classification": "Invalid Address",
            "sg_event_id": "e1",
        },
        {
            "event": "bounce",
            "type": "blocked",
            "email": "b@example.org",
            "reason": "421 4.7.0 try later",
        },
        {"event": "dropped", "email": "c@example.org", "reason": "Bounced Address"},
        {"event": "dropped", "email": "d@example.org", "reason": "Unsubscribed Address"},
        {"event": "spamreport", "email": "e@example.org"},
        {"event": "delivered", "email": "f@example.org"},
        {"event": "deferred", "email": "g@example.org"},
        {"event": "bounce", "type": "bounce"},
        "garbage",
    ]
    batch = sendgrid_events(events)
    kinds = {event.recipient: event.provider_kind for event in batch.events}
    assert kinds == {
        "a@example.org": ProviderKind.PERMANENT,
        "b@example.org": ProviderKind.TEMPORARY,
        "c@example.org": ProviderKind.PERMANENT,
        "e@example.org": ProviderKind.COMPLAINT,
    }
    first = batch.events[0]
    assert first.address_invalid and first.status == "5.1.1" and first.message_id == OUR_MESSAGE_ID
    assert batch.events[1].status == "4.7.0"
    assert batch.ignored == 3
    assert batch.skipped == [
        "event 8: a bounce event has no email address",
        "event 9: not a JSON object",
    ]
    assert sendgrid_events({"event": "bounce"}).skipped == [
        "the body is not a JSON array of events"
    ]


def test_mailgun_failed_and_complained() -> None:
    failed = {
        "signature": {},
        "event-data": {
            "event": "failed",
            "severity": "permanent",
            "reason": "bounce",
            "recipient": "m@example.org",
            "id": "mg-1",
            "delivery-status": {
                "code": 550,
                "message": "5.1.1 The email account that you tried to reach does not exist",
            },
            "message": {"headers": {"message-id": OUR_MESSAGE_ID.strip("<>")}},
        },
    }
    (event,) = mailgun_events(failed).events
    assert event.provider_kind is ProviderKind.PERMANENT
    assert (event.status, event.message_id) == ("5.1.1", OUR_MESSAGE_ID)
    assert event.diagnostic is not None and event.diagnostic.startswith("550 5.1.1")
    temporary = {
        "event-data": {"event": "failed", "severity": "temporary", "recipient": "m@example.org"}
    }
    assert mailgun_events(temporary).events[0].provider_kind is ProviderKind.TEMPORARY
    complained = {"event-data": {"event": "complained", "recipient": "m@example.org"}}
    assert mailgun_events(complained).events[0].provider_kind is ProviderKind.COMPLAINT
    assert mailgun_events({"event-data": {"event": "opened"}}).ignored == 1
    assert mailgun_events({"nothing": 1}).skipped == ["the body has no event-data object"]


def test_postmark_records() -> None:
    hard = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "Email": "p@example.org",
        "ID": 4323372036854775807,
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Metadata": {"sluice-queue-item": "42"},
    }
    (event,) = postmark_events(hard).events
    assert event.provider_kind is ProviderKind.PERMANENT and event.address_invalid
    assert (event.status, event.queue_item_header, event.event_id) == (
        "5.1.1",
        "42",
        "4323372036854775807",
    )
    soft = {"RecordType": "Bounce", "Type": "SoftBounce", "Email": "p@example.org"}
    assert postmark_events(soft).events[0].provider_kind is ProviderKind.TEMPORARY
    auto = {"RecordType": "Bounce", "Type": "AutoResponder", "Email": "p@example.org"}
    assert postmark_events(auto).events[0].provider_kind is ProviderKind.AUTOREPLY
    spam = {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "Email": "p@example.org"}
    assert postmark_events(spam).events[0].provider_kind is ProviderKind.COMPLAINT
    assert postmark_events({"RecordType": "Delivery", "Email": "p@example.org"}).ignored == 1
    assert postmark_events(["not", "a", "record"]).skipped == ["event 1: not a JSON object"]


def _event(
    kind: ProviderKind, status: str | None, diagnostic: str | None, *, invalid: bool = False
) -> RelayEvent:
    return RelayEvent(
        provider="test",
        provider_kind=kind,
        recipient="r@example.org",
        description="test",
        status=status,
        diagnostic=diagnostic,
        address_invalid=invalid,
    )


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        # The rule table and the relay agree: hard.
        (_event(ProviderKind.PERMANENT, "5.1.1", "550 5.1.1 user unknown"), ReportKind.HARD),
        # Permanent for this message, not for the address: soft.
        (
            _event(ProviderKind.PERMANENT, "5.7.1", "550 5.7.1 message content rejected as spam"),
            ReportKind.SOFT,
        ),
        # The relay says the address itself is bad, without a code: hard.
        (_event(ProviderKind.PERMANENT, None, None, invalid=True), ReportKind.HARD),
        # Permanent without anything to go on: soft (precision first).
        (_event(ProviderKind.PERMANENT, None, None), ReportKind.SOFT),
        # A temporary failure is never hard, whatever its text says.
        (_event(ProviderKind.TEMPORARY, "4.2.2", "452 4.2.2 mailbox full"), ReportKind.SOFT),
        (_event(ProviderKind.TEMPORARY, None, "user unknown"), ReportKind.SOFT),
        (_event(ProviderKind.COMPLAINT, None, None), ReportKind.COMPLAINT),
        (_event(ProviderKind.AUTOREPLY, None, None), ReportKind.AUTOREPLY),
    ],
)
def test_relay_report_bounds_the_rule_table_by_the_relays_verdict(
    event: RelayEvent, kind: ReportKind
) -> None:
    report = relay_report(event, 42)
    assert report.kind is kind
    assert report.queue_item_id == 42 and report.recipient == "r@example.org"
    assert report.is_bounce == (kind in (ReportKind.HARD, ReportKind.SOFT))
