"""DKIM: signatures made with dkimpy verify against the public key (through
dkimpy's documented ``dnsfunc`` hook, fed the TXT record built from the test
key), tampering breaks them, and keys and settings are checked at start-up."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from app import app_dkim_key, create_app
from app.services.composition import (
    DkimKey,
    DkimSigner,
    RecipientHeaders,
    SenderHeaders,
    build_skeleton,
    load_dkim_key,
)
from app.services.dkim_keys import SIGNED_HEADERS, dns_txt_record
from config import ConfigError, load_settings


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def pem(key: PrivateKeyTypes, form: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def txt_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    """The DNS TXT record for the key, built here independently of Sluice."""
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)


def dns_for(record: bytes) -> Callable[..., bytes | None]:
    """dkimpy's ``dnsfunc``: answers the one name the signature points at."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"mail2026._domainkey.example.com." else None

    return lookup


def message() -> bytes:
    sender = SenderHeaders(
        "Example Corp",
        "news@example.com",
        "reply@example.com",
        "News <12.lists.example.com>",
        "12:7:newsletter:sluice",
        "example.com",
    )
    recipient = RecipientHeaders(
        "Zoë Müller",
        "zoe@example.org",
        99,
        "https://mail.example.com/u/99.x",
        "mailto:b+u-99@bounce.example.com",
        datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    )
    rendered = Rendered("Grüße — spring news", "<p>Hello</p>\n" * 50, "Hello\n" * 50)
    return build_skeleton(sender).compose(rendered, recipient)


KEYS = ["rsa", "ed25519"]


@pytest.fixture(params=KEYS)
def key_pair(
    request: pytest.FixtureRequest,
    rsa_key: rsa.RSAPrivateKey,
    ed25519_key: ed25519.Ed25519PrivateKey,
) -> tuple[DkimKey, bytes]:
    private = rsa_key if request.param == "rsa" else ed25519_key
    key = DkimKey("mail2026", "example.com", pem(private, serialization.PrivateFormat.PKCS8))
    return key, txt_record(private)


def test_signature_verifies_against_the_public_key(key_pair: tuple[DkimKey, bytes]) -> None:
    key, record = key_pair
    signed = DkimSigner(key).sign(message())
    assert signed.startswith(b"DKIM-Signature: ")
    assert dkim.verify(signed, dnsfunc=dns_for(record))


def test_signature_tags(key_pair: tuple[DkimKey, bytes]) -> None:
    key, _ = key_pair
    signer = DkimSigner(key)
    signed = signer.sign(message())
    header = signed.split(b"\r\n\r\n")[0].split(b"\r\nFrom:")[0].replace(b"\r\n", b"")
    tags = dict(
        part.strip().split(b"=", 1) for part in header.removeprefix(b"DKIM-Signature:").split(b";")
    )
    assert tags[b"a"] == signer.algorithm.encode()
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == b"example.com"
    assert tags[b"s"] == b"mail2026"
    signed_names = tags[b"h"].replace(b" ", b"").replace(b"\t", b"").split(b":")
    assert set(signed_names) == set(SIGNED_HEADERS)
    assert len(signed_names) == 2 * len(SIGNED_HEADERS)  # oversigned


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"Hello", b"Hallo", 1),
        lambda m: re.sub(rb"Subject: [^\r]*", b"Subject: Spring news", m, count=1),
        lambda m: m.replace(b"zoe@example.org", b"eve@example.org", 1),
        lambda m: m.replace(
            b"List-Unsubscribe: <https://mail.", b"List-Unsubscribe: <https://evil.", 1
        ),
        lambda m: m.replace(b"\r\n\r\n", b"\r\nSubject: You won\r\n\r\n", 1),
    ],
    ids=["body", "subject", "to", "list-unsubscribe", "added-subject"],
)
def test_tampering_fails_verification(
    key_pair: tuple[DkimKey, bytes], tamper: Callable[[bytes], bytes]
) -> None:
    key, record = key_pair
    signed = DkimSigner(key).sign(message())
    tampered = tamper(signed)
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=dns_for(record))


def test_published_record_matches_the_key(key_pair: tuple[DkimKey, bytes]) -> None:
    key, record = key_pair
    assert dns_txt_record(key).encode() == record


def test_pkcs1_rsa_pem_is_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    key = DkimKey(
        "mail2026", "example.com", pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL)
    )
    signed = DkimSigner(key).sign(message())
    assert dkim.verify(signed, dnsfunc=dns_for(txt_record(rsa_key)))


def test_load_dkim_key_reads_the_configured_file(
    tmp_path: Path, ed25519_key: ed25519.Ed25519PrivateKey
) -> None:
    content = pem(ed25519_key, serialization.PrivateFormat.PKCS8)
    settings = load_settings(
        environ={},
        dkim_selector="mail2026",
        dkim_domain="example.com",
        dkim_key_file=str(tmp_path / "dkim.pem"),
    )
    (tmp_path / "dkim.pem").write_bytes(content)
    assert load_dkim_key(settings) == DkimKey("mail2026", "example.com", content)


def test_no_dkim_settings_means_no_key() -> None:
    assert load_dkim_key(load_settings(environ={})) is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not a key", "not an unencrypted PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM"),
    ],
)
def test_a_malformed_key_stops_start_up_naming_the_setting(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(content)
    settings = load_settings(
        environ={}, dkim_selector="s", dkim_domain="example.com", dkim_key_file=str(key_file)
    )
    with pytest.raises(ConfigError, match=rf"dkim_key_file: .*{reason}"):
        load_dkim_key(settings)


def test_a_weak_rsa_key_is_refused(tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(pem(weak, serialization.PrivateFormat.PKCS8))
    settings = load_settings(
        environ={}, dkim_selector="s", dkim_domain="example.com", dkim_key_file=str(key_file)
    )
    with pytest.raises(ConfigError, match=r"dkim_key_file: .*1024 bits; at least 2048"):
        load_dkim_key(settings)


def test_an_ec_key_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    )
    settings = load_settings(
        environ={}, dkim_selector="s", dkim_domain="example.com", dkim_key_file=str(key_file)
    )
    with pytest.raises(ConfigError, match=r"dkim_key_file: .*RSA or Ed25519"):
        load_dkim_key(settings)


def test_an_encrypted_key_is_refused(
    tmp_path: Path, ed25519_key: ed25519.Ed25519PrivateKey
) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(
        ed25519_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    settings = load_settings(
        environ={}, dkim_selector="s", dkim_domain="example.com", dkim_key_file=str(key_file)
    )
    with pytest.raises(ConfigError, match=r"dkim_key_file: .*unencrypted"):
        load_dkim_key(settings)


def test_an_unreadable_key_file_stops_start_up(tmp_path: Path) -> None:
    settings = load_settings(
        environ={},
        dkim_selector="s",
        dkim_domain="example.com",
        dkim_key_file=str(tmp_path / "missing.pem"),
    )
    with pytest.raises(ConfigError, match="dkim_key_file: cannot read"):
        load_dkim_key(settings)


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"dkim_selector": "s"}, "dkim_domain, dkim_key_file not set"),
        ({"dkim_domain": "example.com", "dkim_key_file": "k.pem"}, "dkim_selector not set"),
        ({"dkim_key_file": "k.pem"}, "dkim_selector, dkim_domain not set"),
    ],
)
def test_a_partial_dkim_configuration_names_what_is_missing(
    given: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigError, match=missing):
        load_settings(environ={}, **given)


def test_dkim_settings_come_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "SLUICE_DKIM_SELECTOR": "mail2026",
            "SLUICE_DKIM_DOMAIN": "example.com",
            "SLUICE_DKIM_KEY_FILE": "/etc/sluice/dkim.pem",
        }
    )
    assert (settings.dkim_selector, settings.dkim_domain, settings.dkim_key_file) == (
        "mail2026",
        "example.com",
        "/etc/sluice/dkim.pem",
    )


@pytest.mark.parametrize(
    ("key", "value"), [("dkim_selector", "a b"), ("dkim_domain", "exa_mple.com")]
)
def test_a_malformed_selector_or_domain_names_the_setting(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(environ={}, **{key: value})


def test_create_app_refuses_a_bad_key_and_keeps_a_good_one(
    tmp_path: Path, key_pair: tuple[DkimKey, bytes]
) -> None:
    bad_file = tmp_path / "bad.pem"
    bad_file.write_bytes(b"not a key")
    common = {"environ": {}, "instance_path": str(tmp_path / "instance"), "secret_key": "k"}
    bad = load_settings(
        **common, dkim_selector="s", dkim_domain="example.com", dkim_key_file=str(bad_file)
    )
    with pytest.raises(ConfigError, match="dkim_key_file"):
        create_app(bad)

    key, _ = key_pair
    good_file = tmp_path / "good.pem"
    good_file.write_bytes(key.private_key_pem)
    good = load_settings(
        **common,
        dkim_selector=key.selector,
        dkim_domain=key.domain,
        dkim_key_file=str(good_file),
    )
    assert app_dkim_key(create_app(good)) == key
