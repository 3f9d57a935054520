"""Checking that a delivery-event webhook really comes from the relay.

Pure functions: each takes what the request carried and the secret or key
Sluice was configured with, and raises ``SignatureError`` (saying what is
wrong, never echoing a secret) unless the request is authentic and fresh.

- Amazon SNS (for SES): RSA over the message's canonical fields, with the
  certificate at ``SigningCertURL`` (SignatureVersion 1: SHA-1, 2: SHA-256).
  Fetching the certificate is I/O, left to the caller (``app.services.
  webhooks``), which also checks the certificate URL's host.
- SendGrid's signed event webhook: ECDSA P-256 with SHA-256 over the
  timestamp header followed by the raw body.
- Mailgun: HMAC-SHA256 of timestamp + token under the webhook signing key.
- Postmark signs nothing: it sends HTTP basic credentials that are part of
  the webhook URL an administrator configured.

A timestamp older than ``MAX_AGE`` (or that far in the future) is refused,
so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

MAX_AGE = timedelta(minutes=15)

# Amazon SNS: the fields signed, in this order, per message type
# ("Verifying the signatures of Amazon SNS messages", SNS developer guide).
_SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}


class SignatureError(ValueError):
    """The request is not authentic, or too old; ``str()`` says why."""


def check_fresh(moment: datetime, now: datetime) -> None:
    """Refuse a signed timestamp outside ``now`` ± ``MAX_AGE``."""
    if abs(now - moment) > MAX_AGE:
        raise SignatureError(
            f"the request's timestamp {moment.isoformat()} is more than "
            f"{int(MAX_AGE.total_seconds() // 60)} minutes from now"
        )


def _unix_time(value: object, what: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(str(value).strip()), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise SignatureError(f"{what} is not a Unix timestamp") from None


# ------------------------------------------------------------------ Amazon SNS


def sns_string_to_sign(envelope: Mapping[str, object]) -> bytes:
    """The canonical text SNS signed: each present field's name and value on
    their own lines, in the documented order (Subject only when present)."""
    message_type = envelope.get("Type")
    if not isinstance(message_type, str) or message_type not in _SNS_SIGNED_FIELDS:
        raise SignatureError(f"unknown SNS message type {message_type!r}")
    lines: list[str] = []
    for name in _SNS_SIGNED_FIELDS[message_type]:
        value = envelope.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise SignatureError(f"the SNS message has no {name}")
        lines += (name, value)
    return ("\n".join(lines) + "\n").encode("utf-8")


def verify_sns(envelope: Mapping[str, object], certificate_pem: bytes, now: datetime) -> None:
    """Check an SNS message's signature against its signing certificate
    (already fetched from the checked ``SigningCertURL``) and its age."""
    version = envelope.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # noqa: S303 - SNS SignatureVersion 1 is SHA1withRSA
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise SignatureError(f"unsupported SNS SignatureVersion {version!r}")
    try:
        signature = base64.b64decode(str(envelope.get("Signature", "")), validate=True)
    except binascii.Error:
        raise SignatureError("the SNS signature is not base64") from None
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise SignatureError("the SNS signing certificate is not a PEM certificate") from None
    public_key = certificate.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SignatureError("the SNS signing certificate does not hold an RSA key")
    try:
        public_key.verify(signature, sns_string_to_sign(envelope), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise SignatureError("the SNS signature does not match") from None
    check_fresh(_sns_time(envelope.get("Timestamp")), now)


def _sns_time(value: object) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SignatureError("the SNS Timestamp is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise SignatureError("the SNS Timestamp has no time zone")
    return moment


# ------------------------------------------------------------------ SendGrid


def load_sendgrid_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or as PEM."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise ValueError("not a base64 DER or PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve (ECDSA) public key")
    return key


def verify_sendgrid(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime,
) -> None:
    """SendGrid's ``X-Twilio-Email-Event-Webhook-Signature`` (base64 DER
    ECDSA) over ``X-Twilio-Email-Event-Webhook-Timestamp`` + the raw body."""
    if not signature or not timestamp:
        raise SignatureError("the request carries no SendGrid signature or timestamp")
    try:
        der = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise SignatureError("the SendGrid signature is not base64") from None
    try:
        public_key.verify(der, timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise SignatureError("the SendGrid signature does not match") from None
    check_fresh(_unix_time(timestamp, "the SendGrid timestamp"), now)


# ------------------------------------------------------------------ Mailgun


def verify_mailgun(signature: object, signing_key: str, now: datetime) -> None:
    """The ``signature`` object of a Mailgun webhook: ``{"timestamp",
    "token", "signature"}``, the last the hex HMAC-SHA256 of timestamp +
    token under the signing key."""
    if not isinstance(signature, Mapping):
        raise SignatureError("the request has no Mailgun signature object")
    timestamp, token, given = (signature.get(key) for key in ("timestamp", "token", "signature"))
    if not all(isinstance(value, str) and value for value in (timestamp, token, given)):
        raise SignatureError("the Mailgun signature lacks timestamp, token or signature")
    expected = hmac.new(
        signing_key.encode("utf-8"), f"{timestamp}{token}".encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, str(given).lower()):
        raise SignatureError("the Mailgun signature does not match")
    check_fresh(_unix_time(timestamp, "the Mailgun timestamp"), now)


# ------------------------------------------------------------------ Postmark


def verify_basic_auth(authorization: str | None, expected: str) -> None:
    """HTTP basic credentials (RFC 7617) equal to ``expected``
    ("user:password"), compared in constant time."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise SignatureError("the request carries no basic credentials")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise SignatureError("the basic credentials are not base64") from None
    if not hmac.compare_digest(given, expected.encode("utf-8")):
        raise SignatureError("the basic credentials are wrong")
