"""Delivery-event webhooks end to end: a campaign is sent to the test SMTP
server, then each relay's signed events about those messages are POSTed to
``/webhooks/<provider>`` and land in the campaign log, the queue item, the
contact and the suppression list. Amazon SNS is played by a local HTTPS
server that serves the signing certificate and the subscription URL."""

from __future__ import annotations

import base64
import dataclasses
import email
import json
import re
import ssl
import tempfile
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY
from app.models import CampaignLogEntry, CampaignLogEvent, QueueItemStatus
from app.services import suppression
from app.services.webhooks import SnsWeb
from app.web.webhooks import SNS_WEB_KEY
from tests.integration.test_dispatch import World, make_world
from tests.relay_signing import SendGridSigner, SnsSigner, mailgun_signature, sns_notification
from tests.smtp_server import RunningServer, self_signed_certificate, smtp_server

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
MAILGUN_KEY = "key-0123456789abcdef"
POSTMARK = "postmark:s3cret-Pa55"
SENDGRID = SendGridSigner.create()


class FakeSns:
    """A local HTTPS server in the role of Amazon SNS's certificate and
    subscription endpoints; remembers the paths requested."""

    def __init__(self, certificate_pem: bytes) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sluice-sns-"))
        cert, key = self_signed_certificate(self.folder)
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = (
                    certificate_pem
                    if self.path.endswith(".pem")
                    else b"<ConfirmSubscriptionResponse/>"
                )
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.client_context = ssl.create_default_context(cafile=str(cert))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="module")
def sns_signer() -> SnsSigner:
    return SnsSigner.create()


@pytest.fixture
def fake_sns(sns_signer: SnsSigner) -> Iterator[FakeSns]:
    fake = FakeSns(sns_signer.certificate_pem)
    yield fake
    fake.close()


@pytest.fixture
def world(
    app: Flask, session: Session, clock: FixedClock, server: RunningServer, fake_sns: FakeSns
) -> World:
    app.config["SLUICE_SETTINGS"] = dataclasses.replace(
        app_settings(app),
        webhook_ses_topic_arns=f"arn:aws:sns:eu-west-1:1:other, {TOPIC}",
        webhook_sendgrid_public_key=SENDGRID.public_key_setting,
        webhook_mailgun_signing_key=MAILGUN_KEY,
        webhook_postmark_credentials=POSTMARK,
    )
    app.config[CLOCK_CONFIG_KEY] = clock
    app.extensions[SNS_WEB_KEY] = SnsWeb(
        host=re.compile(r"127\.0\.0\.1"), ssl_context=fake_sns.client_context
    )
    return make_world(app, session, clock, server)


@pytest.fixture
def sent(world: World) -> dict[str, str]:
    """Three messages sent; each address's Message-ID as the relay saw it."""
    world.start("Spring", ["ann@example.org", "bob@example.org", "cy@example.org"])
    world.tick()
    return {
        message.recipients[0]: str(email.message_from_bytes(message.data)["Message-ID"])
        for message in world.server.handler.messages
    }


def client(world: World) -> FlaskClient:
    return world.app.test_client()


def log_events(world: World, address: str) -> list[CampaignLogEvent]:
    item = world.item(address)
    rows = world.session.scalars(
        select(CampaignLogEntry).where(CampaignLogEntry.queue_item_id == item.id)
    )
    return [row.event for row in rows]


def assert_hard_bounced(world: World, address: str) -> None:
    world.session.expire_all()
    item = world.item(address)
    assert item.status is QueueItemStatus.BOUNCED
    assert suppression.is_suppressed(world.session, address)
    assert CampaignLogEvent.BOUNCED_HARD in log_events(world, address)


def assert_untouched(world: World, address: str) -> None:
    world.session.expire_all()
    assert world.item(address).status is QueueItemStatus.SENT
    assert not suppression.is_suppressed(world.session, address)
    assert log_events(world, address) == [CampaignLogEvent.SENT]


# ------------------------------------------------------------------ Amazon SES


def ses_post(
    world: World, fake_sns: FakeSns, signer: SnsSigner, message: object, **changes: str
) -> Any:
    envelope = sns_notification(
        message,
        topic=TOPIC,
        certificate_url=fake_sns.url("/SimpleNotificationService-1.pem"),
        timestamp=world.clock.now(),
    )
    envelope.update(changes)
    return client(world).post("/webhooks/ses", data=json.dumps(signer.sign(envelope)))


def ses_bounce(
    address: str, message_id: str, bounce_type: str = "Permanent", status: str = "5.1.1"
) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "status": status,
                    "diagnosticCode": f"smtp; 550 {status} user unknown",
                }
            ],
        },
        "mail": {"commonHeaders": {"messageId": message_id}},
    }


def test_ses_permanent_bounce_is_a_hard_bounce_of_that_item(
    world: World, sent: dict[str, str], fake_sns: FakeSns, sns_signer: SnsSigner
) -> None:
    response = ses_post(
        world, fake_sns, sns_signer, ses_bounce("ann@example.org", sent["ann@example.org"])
    )
    assert response.status_code == 200, response.json
    assert response.json["applied"] == 1
    assert_hard_bounced(world, "ann@example.org")
    assert_untouched(world, "bob@example.org")
    assert fake_sns.requests == ["/SimpleNotificationService-1.pem"]


def test_ses_transient_bounce_is_soft_and_a_complaint_opts_out(
    world: World, sent: dict[str, str], fake_sns: FakeSns, sns_signer: SnsSigner
) -> None:
    soft = ses_bounce("bob@example.org", sent["bob@example.org"], "Transient", "4.2.2")
    assert ses_post(world, fake_sns, sns_signer, soft).status_code == 200
    complaint = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "cy@example.org"}]},
        "mail": {"commonHeaders": {"messageId": sent["cy@example.org"]}},
    }
    assert ses_post(world, fake_sns, sns_signer, complaint).status_code == 200
    world.session.expire_all()
    assert CampaignLogEvent.BOUNCED_SOFT in log_events(world, "bob@example.org")
    assert not suppression.is_suppressed(world.session, "bob@example.org")
    assert CampaignLogEvent.COMPLAINT in log_events(world, "cy@example.org")
    assert suppression.is_suppressed(world.session, "cy@example.org")


def test_ses_forged_or_foreign_messages_change_nothing(
    world: World, sent: dict[str, str], fake_sns: FakeSns, sns_signer: SnsSigner
) -> None:
    bounce = ses_bounce("ann@example.org", sent["ann@example.org"])
    forged = ses_post(world, fake_sns, SnsSigner.create(), bounce)
    foreign_topic = ses_post(
        world, fake_sns, sns_signer, bounce, TopicArn="arn:aws:sns:eu-west-1:6:evil"
    )
    stale = ses_post(
        world,
        fake_sns,
        sns_signer,
        bounce,
        Timestamp=(world.clock.now() - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
    )
    outside_sns = ses_post(
        world, fake_sns, sns_signer, bounce, SigningCertURL="https://evil.example/cert.pem"
    )
    assert [r.status_code for r in (forged, foreign_topic, stale, outside_sns)] == [403] * 4
    assert_untouched(world, "ann@example.org")


def test_ses_subscription_is_confirmed_at_the_subscribe_url(
    world: World, fake_sns: FakeSns, sns_signer: SnsSigner
) -> None:
    envelope = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": fake_sns.url("/?Action=ConfirmSubscription&Token=2336412f37"),
        "Timestamp": world.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": fake_sns.url("/SimpleNotificationService-1.pem"),
    }
    response = client(world).post("/webhooks/ses", data=json.dumps(sns_signer.sign(envelope, "2")))
    assert response.status_code == 200 and response.json["subscription_confirmed"]
    assert "/?Action=ConfirmSubscription&Token=2336412f37" in fake_sns.requests


# ------------------------------------------------------------------ SendGrid


def sendgrid_post(
    world: World, events: list[dict[str, Any]], signer: SendGridSigner = SENDGRID
) -> Any:
    body = json.dumps(events).encode()
    return client(world).post(
        "/webhooks/sendgrid",
        data=body,
        headers=signer.headers(body, world.clock.now()),
        content_type="application/json",
    )


def test_sendgrid_batch_applies_each_event_and_matches_by_message_id(
    world: World, sent: dict[str, str]
) -> None:
    events = [
        {"event": "delivered", "email": "bob@example.org", "smtp-id": sent["bob@example.org"]},
        {
            "event": "bounce",
            "type": "bounce",
            "email": "ann@example.org",
            "status": "5.1.1",
            "reason": "550 5.1.1 The email account does not exist",
            "smtp-id": sent["ann@example.org"],
        },
        {"event": "spamreport", "email": "cy@example.org", "smtp-id": sent["cy@example.org"]},
        # A Message-ID of another item with this address: not applied.
        {
            "event": "bounce",
            "type": "bounce",
            "email": "bob@example.org",
            "status": "5.1.1",
            "reason": "550 5.1.1 no such user",
            "smtp-id": sent["ann@example.org"],
        },
    ]
    response = sendgrid_post(world, events)
    assert response.status_code == 200, response.json
    assert (response.json["applied"], response.json["unmatched"], response.json["ignored"]) == (
        2,
        1,
        1,
    )
    assert_hard_bounced(world, "ann@example.org")
    assert suppression.is_suppressed(world.session, "cy@example.org")
    assert_untouched(world, "bob@example.org")


def test_sendgrid_bad_signature_changes_nothing(world: World, sent: dict[str, str]) -> None:
    events = [
        {
            "event": "bounce",
            "type": "bounce",
            "email": "ann@example.org",
            "status": "5.1.1",
            "smtp-id": sent["ann@example.org"],
        }
    ]
    assert sendgrid_post(world, events, SendGridSigner.create()).status_code == 403
    body = json.dumps(events).encode()
    unsigned = client(world).post("/webhooks/sendgrid", data=body)
    assert unsigned.status_code == 403
    assert_untouched(world, "ann@example.org")


# ------------------------------------------------------------------ Mailgun


def mailgun_post(
    world: World, event: dict[str, Any], key: str = MAILGUN_KEY, token: str = "t" * 50
) -> Any:
    payload = {"signature": mailgun_signature(key, world.clock.now(), token), "event-data": event}
    return client(world).post("/webhooks/mailgun", json=payload)


def test_mailgun_permanent_failure_is_hard_and_a_forgery_is_refused(
    world: World, sent: dict[str, str]
) -> None:
    event = {
        "event": "failed",
        "severity": "permanent",
        "recipient": "ann@example.org",
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
        "message": {"headers": {"message-id": sent["ann@example.org"].strip("<>")}},
    }
    assert mailgun_post(world, event, key="key-wrong").status_code == 403
    assert_untouched(world, "ann@example.org")
    assert mailgun_post(world, event).status_code == 200
    assert_hard_bounced(world, "ann@example.org")


# ------------------------------------------------------------------ Postmark


def postmark_post(world: World, record: dict[str, Any], credentials: str = POSTMARK) -> Any:
    authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
    return client(world).post(
        "/webhooks/postmark", json=record, headers={"Authorization": authorization}
    )


def test_postmark_hard_bounce_matches_the_latest_item_sent_to_the_address(
    world: World, sent: dict[str, str]
) -> None:
    record = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "Email": "ANN@example.org",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
    }
    assert postmark_post(world, record, "postmark:wrong").status_code == 403
    assert_untouched(world, "ann@example.org")
    response = postmark_post(world, record)
    assert response.status_code == 200 and response.json["applied"] == 1
    assert_hard_bounced(world, "ann@example.org")


# ------------------------------------------------------------------ every provider


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "mailgun", "postmark"])
def test_malformed_oversized_and_unconfigured_requests(world: World, provider: str) -> None:
    web = client(world)
    assert web.post("/webhooks/nope", data=b"{}").status_code == 404
    huge = web.post(f"/webhooks/{provider}", data=b"[" + b"1," * (3 * 1024 * 1024) + b"1]")
    assert huge.status_code == 413
    if provider == "postmark":
        authorization = "Basic " + base64.b64encode(POSTMARK.encode()).decode()
        garbled = web.post(
            f"/webhooks/{provider}", data=b"{not json", headers={"Authorization": authorization}
        )
        assert garbled.status_code == 400
    world.app.config["SLUICE_SETTINGS"] = dataclasses.replace(
        app_settings(world.app),
        **{
            "webhook_ses_topic_arns": "",
            "webhook_sendgrid_public_key": "",
            "webhook_mailgun_signing_key": "",
            "webhook_postmark_credentials": "",
        },
    )
    assert web.post(f"/webhooks/{provider}", data=b"{}").status_code == 404


def test_the_same_event_delivered_twice_is_applied_once(world: World, sent: dict[str, str]) -> None:
    soft = [
        {
            "event": "bounce",
            "type": "blocked",
            "email": "bob@example.org",
            "status": "4.7.1",
            "reason": "421 4.7.1 try later",
            "smtp-id": sent["bob@example.org"],
            "sg_event_id": "ev-1",
        }
    ]
    assert sendgrid_post(world, soft).status_code == 200
    assert sendgrid_post(world, soft).status_code == 200
    world.session.expire_all()
    count = world.session.scalar(
        select(func.count())
        .select_from(CampaignLogEntry)
        .where(CampaignLogEntry.event == CampaignLogEvent.BOUNCED_SOFT)
    )
    assert count == 1
