"""Webhook authentication: each relay's signature is checked against the raw
request, and a forged, altered, stale or malformed one is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bounce.relay_signatures import (
    SignatureError,
    load_sendgrid_key,
    verify_basic_auth,
    verify_mailgun,
    verify_sendgrid,
    verify_sns,
)
from tests.relay_signing import SendGridSigner, SnsSigner, mailgun_signature, sns_notification

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-events"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"


@pytest.fixture(scope="module")
def sns() -> SnsSigner:
    return SnsSigner.create()


def _notification(timestamp: datetime = NOW) -> dict[str, str]:
    return sns_notification(
        {"notificationType": "Bounce"}, topic=TOPIC, certificate_url=CERT_URL, timestamp=timestamp
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signature_of_either_version_verifies(sns: SnsSigner, version: str) -> None:
    verify_sns(sns.sign(_notification(), version), sns.certificate_pem, NOW)


def test_sns_signature_with_subject_covers_the_subject(sns: SnsSigner) -> None:
    signed = sns.sign({**_notification(), "Subject": "Amazon SES Email Event Notification"})
    verify_sns(signed, sns.certificate_pem, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_sns({**signed, "Subject": "something else"}, sns.certificate_pem, NOW)


def test_sns_altered_message_is_refused(sns: SnsSigner) -> None:
    signed = sns.sign(_notification())
    altered = {**signed, "Message": signed["Message"].replace("Bounce", "Complaint")}
    with pytest.raises(SignatureError, match="does not match"):
        verify_sns(altered, sns.certificate_pem, NOW)


def test_sns_signature_by_another_certificate_is_refused(sns: SnsSigner) -> None:
    other = SnsSigner.create()
    with pytest.raises(SignatureError, match="does not match"):
        verify_sns(other.sign(_notification()), sns.certificate_pem, NOW)


def test_sns_message_older_than_the_window_is_refused(sns: SnsSigner) -> None:
    stale = sns.sign(_notification(NOW - timedelta(hours=1)))
    with pytest.raises(SignatureError, match="minutes from now"):
        verify_sns(stale, sns.certificate_pem, NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"Signature": "not base64!"}, "not base64"),
        ({"Type": "Surprise"}, "unknown SNS message type"),
        ({"Timestamp": "yesterday"}, "does not match"),
    ],
)
def test_sns_malformed_fields_are_refused(
    sns: SnsSigner, change: dict[str, str], message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_sns({**sns.sign(_notification()), **change}, sns.certificate_pem, NOW)


def test_sns_missing_field_is_refused(sns: SnsSigner) -> None:
    signed = sns.sign(_notification())
    del signed["MessageId"]
    with pytest.raises(SignatureError, match="no MessageId"):
        verify_sns(signed, sns.certificate_pem, NOW)


def test_sns_certificate_that_is_not_pem_is_refused(sns: SnsSigner) -> None:
    with pytest.raises(SignatureError, match="not a PEM certificate"):
        verify_sns(sns.sign(_notification()), b"<html>not a certificate</html>", NOW)


def test_sendgrid_signature_verifies_and_covers_the_body() -> None:
    signer = SendGridSigner.create()
    key = load_sendgrid_key(signer.public_key_setting)
    body = json.dumps([{"event": "bounce", "email": "a@example.com"}]).encode()
    headers = signer.headers(body, NOW)
    signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
    timestamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
    verify_sendgrid(body, signature, timestamp, key, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_sendgrid(body.replace(b"bounce", b"delivered"), signature, timestamp, key, NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_sendgrid(body, signature, str(int(timestamp) + 1), key, NOW)
    with pytest.raises(SignatureError, match="minutes from now"):
        verify_sendgrid(body, signature, timestamp, key, NOW + timedelta(hours=2))


@pytest.mark.parametrize(
    ("signature", "timestamp", "message"),
    [
        (None, "1764158400", "no SendGrid signature"),
        ("c2ln", None, "no SendGrid signature"),
        ("%%%", "1764158400", "not base64"),
        ("c2lnbmF0dXJl", "1764158400", "does not match"),
    ],
)
def test_sendgrid_missing_or_malformed_signature_is_refused(
    signature: str | None, timestamp: str | None, message: str
) -> None:
    key = load_sendgrid_key(SendGridSigner.create().public_key_setting)
    with pytest.raises(SignatureError, match=message):
        verify_sendgrid(b"[]", signature, timestamp, key, NOW)


def test_sendgrid_key_setting_accepts_pem_and_refuses_other_keys() -> None:
    signer = SendGridSigner.create()
    pem = (
        signer.key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert load_sendgrid_key(pem).public_numbers() == signer.key.public_key().public_numbers()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    rsa_der = rsa_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="not an elliptic-curve"):
        load_sendgrid_key(base64.b64encode(rsa_der).decode())
    with pytest.raises(ValueError, match="not a base64 DER or PEM"):
        load_sendgrid_key("hello world")


def test_mailgun_signature_verifies_and_is_bound_to_key_and_token() -> None:
    signature = mailgun_signature("key-secret", NOW, "a" * 50)
    verify_mailgun(signature, "key-secret", NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_mailgun(signature, "key-other", NOW)
    with pytest.raises(SignatureError, match="does not match"):
        verify_mailgun({**signature, "token": "b" * 50}, "key-secret", NOW)
    with pytest.raises(SignatureError, match="minutes from now"):
        verify_mailgun(signature, "key-secret", NOW + timedelta(minutes=16))


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "text",
        {},
        {"timestamp": "1", "token": "t"},
        {"timestamp": 1, "token": "t", "signature": "x"},
    ],
)
def test_mailgun_malformed_signature_object_is_refused(signature: object) -> None:
    with pytest.raises(SignatureError, match="signature"):
        verify_mailgun(signature, "key-secret", NOW)


def test_mailgun_timestamp_that_is_not_a_number_is_refused() -> None:
    signature = mailgun_signature("key-secret", NOW, "token")
    signature["timestamp"] = "soon"
    signature["signature"] = mailgun_signature("key-secret", NOW, "token")["signature"]
    with pytest.raises(SignatureError):
        verify_mailgun(signature, "key-secret", NOW)


def test_basic_credentials() -> None:
    good = "Basic " + base64.b64encode(b"postmark:s3cret").decode()
    verify_basic_auth(good, "postmark:s3cret")
    for header in (
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic %%%",
        "Basic " + base64.b64encode(b"postmark:wrong").decode(),
    ):
        with pytest.raises(SignatureError):
            verify_basic_auth(header, "postmark:s3cret")
