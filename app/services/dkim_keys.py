"""DKIM signing (RFC 6376) of composed messages with ``dkimpy``.

Rules:
- A key is RSA of at least 2048 bits (RFC 8301 §3.2 demands at least 1024;
  mailbox providers expect 2048) or Ed25519 (RFC 8463), read from a PEM file
  (PKCS#1, PKCS#8 or OpenSSL's traditional form); the algorithm is detected
  from the key itself.
- A missing, unreadable or malformed key stops start-up with a
  ``ConfigError`` naming ``dkim_key_file``.
- Signatures use relaxed/relaxed canonicalization (survives the header
  refolding and whitespace changes relays make) and cover From, To, Subject,
  Date, Message-ID, Reply-To, List-Id, List-Unsubscribe, List-Unsubscribe-Post
  (RFC 8058 §4: MUST be signed), Feedback-ID, MIME-Version and Content-Type.
  Each is signed twice ("oversigned", RFC 6376 §8.15) so a second copy added
  on the way breaks the signature; a name listed but absent from the message
  (Reply-To) cannot be added later either.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dkim  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from config import ConfigError, Settings

MIN_RSA_BITS = 2048
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
    b"mime-version",
    b"content-type",
)
Algorithm = Literal["rsa-sha256", "ed25519-sha256"]


@dataclass(frozen=True)
class DkimKey:
    """A selector, the signing domain (d=) and the private key in PEM."""

    selector: str
    domain: str
    private_key_pem: bytes


@dataclass(frozen=True)
class _ParsedKey:
    algorithm: Algorithm
    dkimpy_private_key: bytes  # the form dkim.sign takes for the algorithm
    public_key: bytes  # the p= value of the DNS record, base64


def parse_private_key(pem: bytes) -> _ParsedKey:
    """Detect RSA or Ed25519 and convert to dkimpy's input: PKCS#1 PEM for
    RSA; for Ed25519 the base64 of the 32-byte seed (dkimpy hands it to
    ``nacl.signing.SigningKey`` with a base64 encoder, as its dknewkey
    writes it). Raises ValueError saying what is wrong."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not an unencrypted PEM private key ({error})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} needed")
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _ParsedKey("rsa-sha256", private, base64.b64encode(public))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return _ParsedKey("ed25519-sha256", base64.b64encode(seed), base64.b64encode(public))
    raise ValueError(f"a {type(key).__name__}; DKIM keys are RSA or Ed25519")


def load_dkim_key(settings: Settings) -> DkimKey | None:
    """The configured key, or None when DKIM is not configured (config
    guarantees the three settings come together). The key is parsed here so
    a bad one stops start-up, not the first send."""
    if not settings.dkim_key_file:
        return None
    path = Path(settings.dkim_key_file)
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"dkim_key_file: cannot read {path}: {error.strerror}") from None
    try:
        parse_private_key(pem)
    except ValueError as error:
        raise ConfigError(f"dkim_key_file: {path} holds {error}") from None
    return DkimKey(settings.dkim_selector, settings.dkim_domain, pem)


def dns_txt_record(key: DkimKey) -> str:
    """The TXT record to publish at ``<selector>._domainkey.<domain>``."""
    parsed = parse_private_key(key.private_key_pem)
    kind = "rsa" if parsed.algorithm == "rsa-sha256" else "ed25519"
    return f"v=DKIM1; k={kind}; p={parsed.public_key.decode('ascii')}"


class DkimSigner:
    """Signs composed messages with one key; parse the key once, sign many."""

    def __init__(self, key: DkimKey) -> None:
        parsed = parse_private_key(key.private_key_pem)
        self._algorithm = parsed.algorithm.encode("ascii")
        self._private_key = parsed.dkimpy_private_key
        self._selector = key.selector.encode("ascii")
        self._domain = key.domain.encode("idna")

    @property
    def algorithm(self) -> Algorithm:
        return "rsa-sha256" if self._algorithm == b"rsa-sha256" else "ed25519-sha256"

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header prepended."""
        signature: bytes = dkim.sign(
            message,
            self._selector,
            self._domain,
            self._private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=self._algorithm,
            include_headers=list(SIGNED_HEADERS + SIGNED_HEADERS),
        )
        return signature + message
