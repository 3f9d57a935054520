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
- dkimpy parses, canonicalizes, selects and hashes the headers and builds
  the header field; the signature itself is computed by OpenSSL through
  ``cryptography`` (RSASSA-PKCS1-v1_5 or Ed25519 over the SHA-256 hash,
  RFC 6376 §3.3, RFC 8463 §3). dkimpy's own RSA arithmetic is pure Python:
  ~100 messages/s against ~1,000 through OpenSSL on one core.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dkim  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]

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
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    public_key: bytes  # the p= value of the DNS record, base64


def parse_private_key(pem: bytes) -> _ParsedKey:
    """Detect RSA or Ed25519 and read the public key's DNS form. Raises
    ValueError saying what is wrong."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not an unencrypted PEM private key ({error})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} needed")
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _ParsedKey("rsa-sha256", key, base64.b64encode(public))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return _ParsedKey("ed25519-sha256", key, base64.b64encode(public))
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
        self._private_key = parsed.private_key
        self._selector = key.selector.encode("ascii")
        self._domain = key.domain.encode("idna")

    @property
    def algorithm(self) -> Algorithm:
        return "rsa-sha256" if self._algorithm == b"rsa-sha256" else "ed25519-sha256"

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header prepended."""
        parsed = dkim.DKIM(message, linesep=b"\r\n")  # headers and body, as dkimpy reads them
        body = _RELAXED.canonicalize_body(parsed.body)
        include = SIGNED_HEADERS + SIGNED_HEADERS
        # dkimpy's tags, in dkimpy's order (DKIM.sign); b= empty while hashing.
        tags = [
            (b"v", b"1"),
            (b"a", self._algorithm),
            (b"c", b"relaxed/relaxed"),
            (b"d", self._domain),
            (b"i", b"@" + self._domain),
            (b"q", b"dns/txt"),
            (b"s", self._selector),
            (b"t", str(int(time.time())).encode("ascii")),
            (b"h", b" : ".join(include)),
            (b"bh", base64.b64encode(hashlib.sha256(body).digest())),
            (b"b", b""),
        ]
        unsigned = dkim.fold(_tag_list(tags), namelen=len(_HEADER_NAME))
        hasher = hashlib.sha256()
        dkim.hash_headers(
            hasher,
            _RELAXED,
            _RELAXED.canonicalize_headers(parsed.headers),
            include,
            (_HEADER_NAME, b" " + unsigned),
            dict(tags),
        )
        tags[-1] = (b"b", base64.b64encode(self._signature(hasher.digest())))
        value: bytes = dkim.fold(_tag_list(tags) + b"\r\n", namelen=len(_HEADER_NAME))
        return _HEADER_NAME + b": " + value + message

    def _signature(self, digest: bytes) -> bytes:
        """The signature of the headers' SHA-256 ``digest`` (OpenSSL)."""
        key = self._private_key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return key.sign(digest)  # RFC 8463 §3: Ed25519 signs the SHA-256 hash


_HEADER_NAME = b"DKIM-Signature"
_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


def _tag_list(tags: list[tuple[bytes, bytes]]) -> bytes:
    return b"; ".join(name + b"=" + value for name, value in tags)
