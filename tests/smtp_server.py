"""A real SMTP server for tests: aiosmtpd in-process, with injected faults.

Faults are set on the handler while the server runs:
- ``rcpt_replies[address] = "550 5.1.1 User unknown"`` answers RCPT for one address;
- ``rcpt_domain_replies["gmail.com"] = "421 4.7.28 …"`` answers RCPT for every
  address at a domain (a provider's rate limit passed on by the relay);
- ``mail_replies`` and ``data_replies`` (lists, used first-in first-out)
  answer MAIL FROM and DATA once each; ``data_domain_replies`` answers DATA
  for every message to a domain;
- ``drop_next_data`` closes the connection instead of answering DATA (that
  many times), as a crashed or overloaded relay does;
- ``data_delay_seconds`` makes the server slow to answer DATA, so that
  conversations overlap and ``peak_conversations`` (per recipient domain,
  from an accepted RCPT to the end of DATA) shows how many ran at once.
Every accepted message is kept in ``messages`` with its envelope.

``pipelining`` makes the server offer PIPELINING (RFC 2920; aiosmtpd reads
pipelined commands in order but does not advertise it); ``pipelined``
counts the RCPT commands that arrived with the DATA after them already sent.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class ReceivedMessage:
    envelope_from: str
    recipients: list[str]
    data: bytes


@dataclass
class FaultyHandler:
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    rcpt_domain_replies: dict[str, str] = field(default_factory=dict)
    mail_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    data_domain_replies: dict[str, str] = field(default_factory=dict)
    drop_next_data: int = 0
    data_delay_seconds: float = 0.0
    messages: list[ReceivedMessage] = field(default_factory=list)
    sessions: int = 0
    accepted_count: int = 0
    pipelining: bool = False
    pipelined: int = 0
    # Per recipient domain: conversations now between RCPT and the end of
    # DATA, and the most there ever were at once. (The handler's coroutines
    # all run on the server's one event loop, so plain counters are safe.)
    conversations: Counter[str] = field(default_factory=Counter)
    peak_conversations: Counter[str] = field(default_factory=Counter)

    async def handle_EHLO(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # A client says EHLO once per connection (again after STARTTLS).
        if not session.ssl or session.host_name is None:
            self.sessions += 1
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        # The client pipelines when DATA is already waiting behind this RCPT.
        if b"DATA" in bytes(getattr(server._reader, "_buffer", b"")):
            self.pipelined += 1
        domain = address.rpartition("@")[2].lower()
        reply = self.rcpt_replies.get(address, self.rcpt_domain_replies.get(domain))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        self.conversations[domain] += 1
        self.peak_conversations[domain] = max(
            self.peak_conversations[domain], self.conversations[domain]
        )
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        try:
            if self.data_delay_seconds:
                await asyncio.sleep(self.data_delay_seconds)
            return self._answer_data(server, envelope)
        finally:
            for address in envelope.rcpt_tos:
                self.conversations[address.rpartition("@")[2].lower()] -= 1

    def _answer_data(self, server: SMTPServer, envelope: Envelope) -> str:
        if self.drop_next_data > 0:
            self.drop_next_data -= 1
            assert server.transport is not None
            server.transport.close()
            return "421 closing"  # never reaches the client
        if self.data_replies:
            return self.data_replies.pop(0)
        for address in envelope.rcpt_tos:
            reply = self.data_domain_replies.get(address.rpartition("@")[2].lower())
            if reply is not None:
                return reply
        content = envelope.original_content or b""
        self.messages.append(
            ReceivedMessage(str(envelope.mail_from), list(envelope.rcpt_tos), content)
        )
        self.accepted_count += 1
        return f"250 2.0.0 Ok: queued as TEST{self.accepted_count:05d}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, written to ``folder``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class RunningServer:
    handler: FaultyHandler
    host: str
    port: int
    ca_file: Path | None = None

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


@contextmanager
def smtp_server(
    *,
    credentials: tuple[str, str] | None = None,
    tls: str = "none",  # "none", "starttls" or "implicit"
    certificate_folder: Path | None = None,
    pipelining: bool = False,
    auth_refusal: str | None = None,
) -> Iterator[RunningServer]:
    """Start aiosmtpd on a free port of 127.0.0.1; stop it afterwards."""
    handler = FaultyHandler(pipelining=pipelining)
    options: dict[str, Any] = {}
    ca_file = None
    if tls != "none":
        assert certificate_folder is not None
        cert, key = self_signed_certificate(certificate_folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        ca_file = cert
        if tls == "starttls":
            options["tls_context"] = context
            options["require_starttls"] = True
        else:
            options["ssl_context"] = context
    if credentials is not None:
        expected_login, expected_password = credentials

        def authenticate(
            server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
        ) -> AuthResult:
            valid = (
                isinstance(data, LoginPassword)
                and data.login.decode() == expected_login
                and data.password.decode() == expected_password
            )
            # handled=False: aiosmtpd then answers 535 itself (handled=True
            # sends nothing), or ``auth_refusal`` (e.g. a busy relay's 454).
            return AuthResult(success=valid, handled=False, message=None if valid else auth_refusal)

        options.update(authenticator=authenticate, auth_require_tls=False, auth_required=True)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield RunningServer(handler, "127.0.0.1", port, ca_file)
    finally:
        controller.stop()
