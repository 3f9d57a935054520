"""SmtpTransport against a real SMTP server (aiosmtpd) with injected faults."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.clock import SystemClock
from app.services.transport import (
    Security,
    SendOutcome,
    SendResult,
    SmtpSettings,
    SmtpStage,
    SmtpTransport,
    parse_smtp_url,
)
from app.services.transport_pool import SendJob, TransportPool
from tests.smtp_server import RunningServer, free_port, smtp_server

MESSAGE = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    """The server, without and with PIPELINING offered: every behaviour
    below holds for both ways of talking to it."""
    with smtp_server(pipelining=request.param) as running:
        yield running


@pytest.fixture(params=["direct", "pool"])
def way(request: pytest.FixtureRequest) -> str:
    """Each behaviour holds for ``SmtpTransport.send`` and for the
    dispatcher's ``TransportPool``, which drives the same connection's
    transactions itself over a non-blocking socket."""
    return str(request.param)


class PoolSender:
    """One connection of a ``TransportPool``, used one message at a time."""

    def __init__(self, transport: SmtpTransport) -> None:
        self.pool = TransportPool(lambda: transport, 1, SystemClock())
        self.keys = itertools.count()

    def send(self, message: bytes, envelope_from: str, recipient: str) -> SendResult:
        self.pool.submit(SendJob(next(self.keys), message, envelope_from, recipient))
        [outcome] = self.pool.completed(block=True)
        assert outcome.result is not None, outcome.error
        return outcome.result

    def close(self) -> None:
        self.pool.close()


def sender(way: str, transport: SmtpTransport) -> SmtpTransport | PoolSender:
    return transport if way == "direct" else PoolSender(transport)


def transport_for(
    way: str, server: RunningServer, **overrides: object
) -> SmtpTransport | PoolSender:
    settings = SmtpSettings(host=server.host, port=server.port, timeout=5)
    for key, value in overrides.items():
        object.__setattr__(settings, key, value)
    return sender(way, SmtpTransport(settings, ssl_context=server.client_context()))


def test_accepted_message_keeps_the_relays_reply_and_reuses_the_connection(
    way: str,
    server: RunningServer,
) -> None:
    transport = transport_for(way, server)
    first = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    second = transport.send(MESSAGE, "bounces@example.com", "c@example.org")
    transport.close()

    assert first.outcome is SendOutcome.ACCEPTED and first.code == 250
    assert first.stage is SmtpStage.DATA
    assert "queued as TEST00001" in first.reply
    assert second.accepted
    assert server.handler.sessions == 1
    received = server.handler.messages
    assert [(m.envelope_from, m.recipients) for m in received] == [
        ("bounces@example.com", ["b@example.org"]),
        ("bounces@example.com", ["c@example.org"]),
    ]
    assert received[0].data.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    # RFC 2920: offered pipelining is used (DATA sent without waiting for RCPT's reply).
    assert server.handler.pipelined == (2 if server.handler.pipelining else 0)


def test_lines_starting_with_a_dot_arrive_unchanged(way: str, server: RunningServer) -> None:
    message = MESSAGE + b".\r\n..two\r\n.three"  # and no final line break
    transport = transport_for(way, server)
    assert transport.send(message, "bounces@example.com", "b@example.org").accepted
    transport.close()
    assert server.handler.messages[0].data == message + b"\r\n"


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("550 5.7.1 Sender address rejected", SendOutcome.REJECTED),
        ("451 4.3.0 Sender check failed, try later", SendOutcome.TEMPORARY),
    ],
)
def test_sender_reply_is_classified_and_the_session_goes_on(
    way: str, server: RunningServer, reply: str, outcome: SendOutcome
) -> None:
    server.handler.mail_replies.append(reply)
    transport = transport_for(way, server)

    refused = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    after = transport.send(MESSAGE, "bounces@example.com", "c@example.org")
    transport.close()

    assert (refused.outcome, refused.code) == (outcome, int(reply[:3]))
    assert refused.stage is SmtpStage.MAIL  # pipelined or not: the relay's reply about us
    assert after.accepted
    assert [m.recipients for m in server.handler.messages] == [["c@example.org"]]
    assert server.handler.sessions == 1


def test_a_421_to_mail_is_temporary_and_the_next_send_reconnects(
    way: str, server: RunningServer
) -> None:
    server.handler.mail_replies.append("421 4.3.2 Service shutting down")
    transport = transport_for(way, server)

    closing = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    after = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    transport.close()

    assert (closing.outcome, closing.code, closing.stage) == (
        SendOutcome.TEMPORARY,
        421,
        SmtpStage.MAIL,
    )
    assert after.accepted
    assert server.handler.sessions == 2
    assert len(server.handler.messages) == 1


def test_a_421_to_rcpt_says_so_and_the_next_send_reconnects(
    way: str, server: RunningServer
) -> None:
    # A provider's rate limit passed on by the relay: per-domain pacing
    # tells it from the relay's own 421 by the stage, pipelined or not.
    server.handler.rcpt_domain_replies["gmail.com"] = "421 4.7.28 Unusual rate"
    transport = transport_for(way, server)

    limited = transport.send(MESSAGE, "bounces@example.com", "ann@gmail.com")
    after = transport.send(MESSAGE, "bounces@example.com", "bob@example.org")
    transport.close()

    assert (limited.outcome, limited.code, limited.stage) == (
        SendOutcome.TEMPORARY,
        421,
        SmtpStage.RCPT,
    )
    assert "4.7.28" in limited.reply
    assert after.accepted
    assert server.handler.sessions == 2  # a 421 closes the channel (RFC 5321 §3.8)
    assert [m.recipients for m in server.handler.messages] == [["bob@example.org"]]


@pytest.mark.parametrize(
    ("reply", "outcome", "code"),
    [
        ("550 5.1.1 User unknown", SendOutcome.REJECTED_RECIPIENT, 550),
        ("450 4.2.1 Mailbox busy, try later", SendOutcome.TEMPORARY, 450),
    ],
)
def test_recipient_reply_is_classified_and_the_session_goes_on(
    way: str, server: RunningServer, reply: str, outcome: SendOutcome, code: int
) -> None:
    server.handler.rcpt_replies["gone@example.org"] = reply
    transport = transport_for(way, server)

    refused = transport.send(MESSAGE, "bounces@example.com", "gone@example.org")
    after = transport.send(MESSAGE, "bounces@example.com", "ok@example.org")
    transport.close()

    assert (refused.outcome, refused.code, refused.stage) == (outcome, code, SmtpStage.RCPT)
    assert reply.split(" ", 1)[1] in refused.reply
    assert after.accepted
    assert server.handler.sessions == 1  # RSET, not a new connection


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        ("554 5.7.1 Message rejected as spam", SendOutcome.REJECTED),
        ("451 4.3.0 Temporary local problem", SendOutcome.TEMPORARY),
    ],
)
def test_data_reply_is_classified(
    way: str, server: RunningServer, reply: str, outcome: SendOutcome
) -> None:
    server.handler.data_replies.append(reply)
    transport = transport_for(way, server)
    result = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    transport.close()
    assert result.outcome is outcome
    assert result.code == int(reply[:3])
    assert result.stage is SmtpStage.DATA
    assert server.handler.messages == []


def test_dropped_connection_is_temporary_and_the_next_send_reconnects(
    way: str,
    server: RunningServer,
) -> None:
    server.handler.drop_next_data = 1
    transport = transport_for(way, server)

    dropped = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    retried = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    transport.close()

    assert dropped.outcome is SendOutcome.TEMPORARY
    assert dropped.code is None
    assert dropped.stage is SmtpStage.DATA
    assert retried.accepted
    assert server.handler.sessions == 2
    assert len(server.handler.messages) == 1


def test_nothing_listening_is_temporary(way: str) -> None:
    transport = sender(
        way, SmtpTransport(SmtpSettings(host="127.0.0.1", port=free_port(), timeout=2))
    )
    result = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    assert result.outcome is SendOutcome.TEMPORARY
    assert result.code is None
    assert result.stage is SmtpStage.CONNECT


def test_authentication_failure_and_success(way: str) -> None:
    with smtp_server(credentials=("sluice", "s3cret-pass")) as server:
        wrong = transport_for(way, server, username="sluice", password="wrong")
        failed = wrong.send(MESSAGE, "bounces@example.com", "b@example.org")
        right = transport_for(way, server, username="sluice", password="s3cret-pass")
        accepted = right.send(MESSAGE, "bounces@example.com", "b@example.org")
        right.close()

    assert failed.outcome is SendOutcome.AUTH_FAILED
    assert failed.code == 535
    assert failed.stage is SmtpStage.CONNECT
    assert accepted.accepted


@pytest.mark.parametrize(
    ("tls", "security"), [("starttls", Security.STARTTLS), ("implicit", Security.TLS)]
)
def test_tls_modes(way: str, tls: str, security: Security) -> None:
    folder = Path(tempfile.mkdtemp())
    # Larger than a TLS record and a socket buffer: the pool's non-blocking
    # writes go out in pieces.
    large = MESSAGE + b"x" * 76 + b"\r\n" * 20 + (b"y" * 998 + b"\r\n") * 600
    with smtp_server(tls=tls, certificate_folder=folder) as server:
        transport = transport_for(way, server, security=security)
        results = [
            transport.send(message, "bounces@example.com", f"{name}@example.org")
            for name, message in (("b", MESSAGE), ("c", large), ("d", MESSAGE))
        ]
        transport.close()
    assert all(result.accepted for result in results), results
    assert [m.data for m in server.handler.messages] == [MESSAGE, large, MESSAGE]


def test_starttls_refuses_an_untrusted_certificate(way: str) -> None:
    folder = Path(tempfile.mkdtemp())
    with smtp_server(tls="starttls", certificate_folder=folder) as server:
        settings = SmtpSettings(server.host, server.port, Security.STARTTLS, timeout=5)
        transport = sender(way, SmtpTransport(settings))
        result = transport.send(MESSAGE, "bounces@example.com", "b@example.org")
    assert result.outcome is SendOutcome.TEMPORARY
    assert "certificate" in result.reply.lower()
    assert server.handler.messages == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://relay.example.com", SmtpSettings("relay.example.com", 25)),
        (
            "smtp://user%40x:p%3Ass@relay.example.com:587?starttls=1&timeout=10",
            SmtpSettings("relay.example.com", 587, Security.STARTTLS, "user@x", "p:ss", 10),
        ),
        ("smtps://relay.example.com", SmtpSettings("relay.example.com", 465, Security.TLS)),
    ],
)
def test_parse_smtp_url(url: str, expected: SmtpSettings) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://relay.example.com", "smtp://"),
        ("smtp://", "no host"),
        ("smtp://relay.example.com:99999", "invalid port"),
        ("smtp://relay.example.com?tls=1", "unknown options: tls"),
        ("smtps://relay.example.com?starttls=1", "already TLS"),
        ("smtp://relay.example.com?timeout=abc", "timeout"),
        ("smtp://relay.example.com?timeout=0", "timeout"),
    ],
)
def test_parse_smtp_url_errors(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_smtp_url(url)


def test_url_errors_never_repeat_the_password() -> None:
    with pytest.raises(ValueError) as error:
        parse_smtp_url("smtp://user:hunter2-secret@relay.example.com?bogus=1")
    assert "hunter2" not in str(error.value)
