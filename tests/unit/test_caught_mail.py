"""Reading the caught-mail folder: strict ids, and files that are broken,
hand-made or half-written still list and never raise."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.services import caught_mail
from app.services.caught_mail import Envelope

RECEIVED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ENVELOPE = Envelope("sender@example.com", ("rcpt@example.org",))


def store(folder: Path, content: bytes, sequence: int = 1) -> str:
    message_id = caught_mail.new_message_id(RECEIVED, sequence)
    caught_mail.store_message(folder, message_id, content, ENVELOPE, RECEIVED)
    return message_id


@pytest.mark.parametrize(
    "hostile_id",
    [
        "../secret",
        "..",
        "/etc/passwd",
        "20260302T090000000000Z-000001-0123abcd/../../secret",
        "20260302T090000000000Z-000001-0123abcd\x00",
        "20260302T090000000000Z-000001-0123abcd.eml",
        "20260302T090000000000Z-000001-0123ABCD",
        "20260302T090000000000Z-000001-0123abcd\n",
        "",
    ],
)
def test_anything_but_a_well_formed_id_is_not_found(tmp_path: Path, hostile_id: str) -> None:
    folder = tmp_path / "caught"
    store(folder, b"Subject: real\r\n\r\nbody\r\n")
    (tmp_path / "secret.eml").write_bytes(b"Subject: outside the folder\r\n\r\n")

    assert caught_mail.read_message(folder, hostile_id) is None


def test_a_well_formed_id_without_a_message_is_not_found(tmp_path: Path) -> None:
    assert caught_mail.read_message(tmp_path, "20260302T090000000000Z-000001-0123abcd") is None
    assert caught_mail.list_messages(tmp_path / "never-created").total == 0


def test_garbage_without_a_sidecar_still_lists_and_reads(tmp_path: Path) -> None:
    message_id = "20260302T101112131415Z-000007-0123abcd"
    (tmp_path / f"{message_id}.eml").write_bytes(b"\x00\xff\xfe not a message at all")

    (summary,) = caught_mail.list_messages(tmp_path).messages
    assert summary.id == message_id
    assert summary.envelope is None
    # No sidecar: the time in the id.
    assert summary.received == datetime(2026, 3, 2, 10, 11, 12, 131415, tzinfo=UTC)
    assert summary.subject == "(no subject)"

    read = caught_mail.read_message(tmp_path, message_id)
    assert read is not None
    assert read.raw == b"\x00\xff\xfe not a message at all"
    assert read.html is None


@pytest.mark.parametrize(
    ("content", "subject"),
    [
        # Raw 8-bit bytes that are not UTF-8: replaced, not raised.
        (b"Subject: caf\xe9 \xff\r\n\r\nbody\r\n", "caf\ufffd \ufffd"),
        # A broken encoded word stays as written.
        (b"Subject: =?utf-8?q?broken\r\n\r\nbody\r\n", "=?utf-8?q?broken"),
        # An unknown charset: its bytes are shown replaced.
        (b"Subject: =?x-unknown?b?////?=\r\n\r\nbody\r\n", "\ufffd\ufffd\ufffd"),
        (b"From: a@example.com\r\n\r\nno subject\r\n", "(no subject)"),
    ],
)
def test_malformed_headers_still_list(tmp_path: Path, content: bytes, subject: str) -> None:
    message_id = store(tmp_path, content)

    (summary,) = caught_mail.list_messages(tmp_path).messages
    read = caught_mail.read_message(tmp_path, message_id)

    assert summary.subject == subject
    assert read is not None and read.raw == content
    assert read.summary.subject == summary.subject


def test_an_unknown_charset_and_a_broken_transfer_encoding_still_read(tmp_path: Path) -> None:
    content = (
        b"Subject: parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=x-bogus\r\n\r\nplain \xe9\r\n"
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n--b--\r\n"
    )
    message_id = store(tmp_path, content)

    read = caught_mail.read_message(tmp_path, message_id)

    assert read is not None
    assert read.text == "plain \ufffd"
    assert read.html is not None  # whatever the broken base64 decodes to


def test_a_broken_sidecar_means_an_unknown_envelope(tmp_path: Path) -> None:
    message_id = store(tmp_path, b"Subject: hello\r\n\r\nbody\r\n")
    for broken in (b"{not json", b"[]", json.dumps({"mail_from": 5}).encode()):
        (tmp_path / f"{message_id}.json").write_bytes(broken)

        (summary,) = caught_mail.list_messages(tmp_path).messages

        assert (summary.envelope, summary.subject, summary.received) == (None, "hello", RECEIVED)


def test_clear_all_removes_messages_and_leftovers_only(tmp_path: Path) -> None:
    store(tmp_path, b"Subject: one\r\n\r\n", sequence=1)
    store(tmp_path, b"Subject: two\r\n\r\n", sequence=2)
    (tmp_path / ".tmp-0123456789abcdef.eml").write_bytes(b"half written")
    (tmp_path / "20260302T090000000000Z-000009-0123abcd.json").write_text("{}")  # orphan
    (tmp_path / "notes.txt").write_text("not ours")

    assert caught_mail.clear_all(tmp_path) == 2

    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert caught_mail.list_messages(tmp_path).total == 0
