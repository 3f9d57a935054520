"""Signing delivery-event webhooks the way each relay does, for tests: an
SNS certificate and key, a SendGrid ECDSA key, Mailgun's HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from bounce.relay_signatures import sns_string_to_sign


@dataclass(frozen=True)
class SnsSigner:
    key: rsa.RSAPrivateKey
    certificate_pem: bytes

    @classmethod
    def create(cls, common_name: str = "sns.amazonaws.com") -> SnsSigner:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate.public_bytes(serialization.Encoding.PEM))

    def sign(self, envelope: dict[str, str], version: str = "1") -> dict[str, str]:
        """``envelope`` with SignatureVersion and Signature added."""
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(sns_string_to_sign(envelope), padding.PKCS1v15(), algorithm)
        return {
            **envelope,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode("ascii"),
        }


def sns_notification(
    message: object, *, topic: str, certificate_url: str, timestamp: datetime
) -> dict[str, str]:
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": topic,
        "Message": json.dumps(message),
        "Timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": certificate_url,
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe",
    }


@dataclass(frozen=True)
class SendGridSigner:
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls) -> SendGridSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_key_setting(self) -> str:
        """The key as SendGrid's settings page shows it: base64 DER."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def headers(self, body: bytes, timestamp: datetime) -> dict[str, str]:
        stamp = str(int(timestamp.timestamp()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }


def mailgun_signature(signing_key: str, timestamp: datetime, token: str) -> dict[str, str]:
    stamp = str(int(timestamp.timestamp()))
    digest = hmac.new(signing_key.encode(), (stamp + token).encode(), hashlib.sha256)
    return {"timestamp": stamp, "token": token, "signature": digest.hexdigest()}
