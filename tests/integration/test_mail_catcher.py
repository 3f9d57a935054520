"""The development mail catcher: real SMTP conversations (smtplib, and
Sluice's own transport) against it on a free port."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.clock import FixedClock
from app.services import caught_mail
from app.services.mail_catcher import MailCatcher, MailCatcherError
from app.services.transport import SmtpTransport, parse_smtp_url

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def message(subject: str, body: str = "Hello.") -> bytes:
    return (
        f"From: Sender <sender@example.com>\r\nTo: rcpt@example.org\r\n"
        f"Subject: {subject}\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "caught"


@pytest.fixture
def catcher(folder: Path, clock: FixedClock) -> Iterator[MailCatcher]:
    with MailCatcher(folder, port=0, clock=clock) as running:
        yield running


def send(catcher: MailCatcher, content: bytes, recipients: list[str] | None = None) -> None:
    with smtplib.SMTP(catcher.host, catcher.port, timeout=10) as client:
        client.sendmail("sender@example.com", recipients or ["rcpt@example.org"], content)


def subjects(folder: Path, **paging: int) -> list[str]:
    return [m.subject for m in caught_mail.list_messages(folder, **paging).messages]


def test_a_message_is_stored_as_received_with_its_envelope(
    catcher: MailCatcher, folder: Path
) -> None:
    content = (
        "From: sender@example.com\r\nTo: zoë@exämple.org\r\nSubject: Grüße\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nCafé crème.\r\n"
    ).encode()
    with smtplib.SMTP(catcher.host, catcher.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("smtputf8") and client.has_extn("8bitmime")
        refused = client.sendmail(
            "sender@example.com",
            ["zoë@exämple.org", "second@example.org"],
            content,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    assert refused == {}

    page = caught_mail.list_messages(folder)
    assert page.total == 1
    (summary,) = page.messages
    assert summary.received == START
    assert summary.envelope is not None
    assert summary.envelope.mail_from == "sender@example.com"
    assert summary.envelope.rcpt_tos == ("zoë@exämple.org", "second@example.org")
    assert "SMTPUTF8" in summary.envelope.mail_options
    assert summary.subject == "Grüße"
    assert summary.size == len(content)

    stored = caught_mail.read_message(folder, summary.id)
    assert stored is not None
    assert stored.raw == content
    assert stored.text == "Café crème.\n"
    assert ("Subject", "Grüße") in stored.headers
    # One .eml and its sidecar, nothing else (no temporary file left).
    assert sorted(p.name for p in folder.iterdir()) == [f"{summary.id}.eml", f"{summary.id}.json"]


def test_sluices_own_transport_reaches_the_catcher_through_its_smtp_url(
    catcher: MailCatcher, folder: Path
) -> None:
    transport = SmtpTransport(parse_smtp_url(catcher.smtp_url))
    result = transport.send(message("Via the transport"), "bounces@example.com", "x@example.org")
    transport.close()

    assert result.accepted
    (summary,) = caught_mail.list_messages(folder).messages
    assert f"caught as {summary.id}" in result.reply
    assert summary.envelope is not None
    assert (summary.envelope.mail_from, summary.envelope.rcpt_tos) == (
        "bounces@example.com",
        ("x@example.org",),
    )


def test_listing_is_newest_first_and_paginated(
    catcher: MailCatcher, folder: Path, clock: FixedClock
) -> None:
    for number in range(1, 6):
        send(catcher, message(f"number {number}"))
        if number != 3:  # 3 and 4 arrive in the same microsecond
            clock.advance(timedelta(seconds=1))

    assert subjects(folder, per_page=2) == ["number 5", "number 4"]
    assert subjects(folder, page=2, per_page=2) == ["number 3", "number 2"]
    last = caught_mail.list_messages(folder, page=3, per_page=2)
    assert [m.subject for m in last.messages] == ["number 1"]
    assert (last.total, last.pages, last.has_next, last.has_previous) == (5, 3, False, True)
    assert caught_mail.list_messages(folder, page=4, per_page=2).messages == []
    with pytest.raises(ValueError, match="page"):
        caught_mail.list_messages(folder, page=0)


def test_a_message_over_the_size_limit_is_answered_552_and_not_stored(
    folder: Path, clock: FixedClock
) -> None:
    big = message("too big", "\r\n".join(["x" * 60] * 50))
    catcher = MailCatcher(folder, port=0, clock=clock, max_message_bytes=2000)
    with catcher, smtplib.SMTP(catcher.host, catcher.port, timeout=10) as client:
        # A client that declares SIZE= is refused at MAIL FROM ...
        with pytest.raises(smtplib.SMTPSenderRefused) as declared:
            client.sendmail("sender@example.com", ["rcpt@example.org"], big)
        assert declared.value.smtp_code == 552
        # ... one that does not, after DATA.
        client.rset()
        assert client.mail("sender@example.com")[0] == 250
        assert client.rcpt("rcpt@example.org")[0] == 250
        code, _ = client.data(big)
        assert code == 552
        # The session goes on: a small message is still accepted.
        client.sendmail("sender@example.com", ["rcpt@example.org"], message("small"))

    assert subjects(folder) == ["small"]


def test_only_the_newest_messages_are_kept(folder: Path, clock: FixedClock) -> None:
    with MailCatcher(folder, port=0, clock=clock, max_messages=3) as catcher:
        for number in range(1, 6):
            send(catcher, message(f"number {number}"))
            clock.advance(timedelta(seconds=1))

    assert subjects(folder) == ["number 5", "number 4", "number 3"]
    assert len(list(folder.iterdir())) == 6  # three messages, three sidecars


def test_a_port_in_use_is_an_error_naming_the_port(catcher: MailCatcher, folder: Path) -> None:
    with pytest.raises(MailCatcherError, match=f"port {catcher.port} .*already in use"):
        MailCatcher(folder, port=catcher.port).start()

    with socket.socket() as other_program:
        other_program.bind(("127.0.0.1", 0))
        other_program.listen()
        taken = other_program.getsockname()[1]
        with pytest.raises(MailCatcherError, match=f"port {taken} "):
            MailCatcher(folder, port=taken).start()


def test_stop_releases_the_port(folder: Path, clock: FixedClock) -> None:
    first = MailCatcher(folder, port=0, clock=clock)
    first.start()
    port = first.port
    first.stop()
    first.stop()  # a second stop is harmless
    assert not first.running

    with MailCatcher(folder, port=port, clock=clock) as again:
        send(again, message("after a restart"))
    assert subjects(folder) == ["after a restart"]


def test_a_message_that_cannot_be_stored_is_refused_with_a_temporary_error(
    catcher: MailCatcher, folder: Path
) -> None:
    folder.rmdir()
    folder.write_text("a file where the folder was")

    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(catcher, message("nowhere to go"))
    # 4xx: the sender keeps the message and retries, nothing is lost silently.
    assert refused.value.smtp_code == 451
