"""``bounce.read`` on real bounces, one or two per detector (the messages in
``tests/fixtures/bounces`` come from Sisimai's public sample set)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bounce
from bounce import ReportKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"


def read_fixture(name: str) -> bounce.BounceReport:
    return bounce.read((FIXTURES / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "kind", "reason", "recipient", "status"),
    [
        # RFC 3464 DSN from Postfix, the reply answered RCPT TO.
        ("lhost-postfix-31.eml", "hard", "userunknown", "kijitora@gmail.com", "5.1.1"),
        # Prose bounces: Exim, qmail, Gmail, GMX.
        ("lhost-exim-02.eml", "hard", "userunknown", "kijitora@example.jp", "5.1.1"),
        ("lhost-qmail-01.eml", "hard", "userunknown", "kijitora@example.ne.jp", "5.5.0"),
        ("lhost-gmail-01.eml", "hard", "userunknown", "userunknown@example.jp", "5.1.1"),
        ("lhost-gmx-01.eml", "soft", "mailboxfull", "shironeko@example.jp", "5.2.2"),
        # Exchange 2003's own words for an unknown mailbox, no SMTP code.
        ("lhost-exchange2003-01.eml", "hard", "userunknown", "kijitora@example.jp", None),
        # "This user doesn't have an account" with no proof it answered RCPT
        # TO: soft (a filter after DATA uses the same words).
        ("lhost-x2-01.eml", "soft", "filtered", "kijitora@example.co.jp", None),
        # A code naming another reason beats "Recipient address rejected".
        ("lhost-dragonfly-06.eml", "soft", "requireptr", "blocked@libsisimai.net", "5.7.25"),
        # Exim refused at MAIL FROM: about the sender, never the mailbox.
        ("lhost-exim-01.eml", "soft", "blocked", "kijitora@example.ed.jp", "5.7.0"),
        # A postmaster address can be the failed recipient too.
        ("lhost-opensmtpd-10.eml", "hard", "hostunknown", "postmaster@cx.libsisimai.org", "5.0.0"),
    ],
)
def test_bounces_are_classified(
    name: str, kind: str, reason: str, recipient: str, status: str | None
) -> None:
    report = read_fixture(name)
    assert report.is_bounce
    assert report.kind == ReportKind(kind)
    assert report.reason == reason
    assert report.recipient == recipient
    assert report.status == status
    assert report.diagnostic
    assert report.problems == ()


def test_each_recipient_of_a_sendmail_transcript_has_its_own_error() -> None:
    report = read_fixture("lhost-v5sendmail-05.eml")
    by_address = {item.recipient: item for item in report.recipients}
    assert report.recipient == "kijitora@example.edu"
    assert "Connection reset by peer" in (by_address["kijitora@example.edu"].diagnostic or "")
    assert "Host unknown" in (by_address["kuroneko@example.or.jp"].diagnostic or "")
    assert by_address["kuroneko@example.or.jp"].kind is ReportKind.HARD
    assert report.kind is ReportKind.SOFT


@pytest.mark.parametrize(
    ("name", "recipient"),
    [("arf-01.eml", "redacted@example.net"), ("arf-22.eml", "kijitora@example.com")],
)
def test_feedback_reports_are_complaints_not_bounces(name: str, recipient: str) -> None:
    report = read_fixture(name)
    assert report.kind is ReportKind.COMPLAINT
    assert not report.is_bounce
    assert report.recipient == recipient


def test_an_out_of_office_reply_is_not_a_bounce() -> None:
    report = read_fixture("rfc3834-01.eml")
    assert report.kind is ReportKind.AUTOREPLY
    assert not report.is_bounce
    assert report.recipient == "kijitora@example.net"


def test_a_delivery_report_is_not_a_bounce() -> None:
    report = read_fixture("rfc3464-28.eml")
    assert not report.is_bounce
    assert report.kind is None
    assert report.reason == "delivered"
    assert report.recipients[0].status == "2.1.5"


def test_the_returned_message_identifiers_are_kept() -> None:
    report = bounce.parse((FIXTURES / "lhost-postfix-31.eml").read_bytes())
    assert report.message_id and report.message_id.startswith("<")
    assert report.returned_message_id and report.returned_message_id.startswith("<")
    assert report.return_addresses  # the bounce's To, then the Return-Path


def test_verp_candidates_and_the_queue_item_header_come_from_the_right_places() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\n"
        b"To: bounces+42.abcdef@bounce.example.com\r\n"
        b"Delivered-To: bounces+42.abcdef@bounce.example.com\r\n"
        b"X-Original-To: other@bounce.example.com\r\n"
        b"Message-ID: <bounce-1@mx.example.net>\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected:"
        b" User unknown in local recipient table\r\n"
        b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Return-Path: <bounces+42.abcdef@bounce.example.com>\r\n"
        b"Message-ID: <campaign-7-42@example.com>\r\nX-Sluice-Queue-Item: 42\r\n"
        b"From: news@example.com\r\nTo: gone@example.org\r\n\r\n--B--\r\n"
    )
    report = bounce.read(raw)
    assert report.kind is ReportKind.HARD
    assert report.recipient == "gone@example.org"
    assert report.return_addresses == (
        "bounces+42.abcdef@bounce.example.com",
        "other@bounce.example.com",
    )
    assert report.returned_queue_item_header == "42"
    assert report.returned_message_id == "<campaign-7-42@example.com>"
    assert report.message_id == "<bounce-1@mx.example.net>"
    assert report.queue_item_id is None  # set only once VERP was verified


def test_a_bounce_wrapped_by_an_appliance_is_read_inside() -> None:
    inner = (FIXTURES / "lhost-postfix-31.eml").read_bytes()
    raw = (
        b"From: MAILER-DAEMON@gateway.example.net\n"
        b"To: bounces@example.com\n"
        b"Subject: Returned mail\n"
        b'Content-Type: multipart/mixed; boundary="W"\n\n'
        b"--W\nContent-Type: text/plain\n\n"
        b"----- The following addresses had permanent delivery errors -----\n\n"
        b"--W\nContent-Type: message/rfc822\n\n" + inner + b"\n--W--\n"
    )
    report = bounce.read(raw)
    assert report.kind is ReportKind.HARD
    assert report.recipient == "kijitora@gmail.com"


def test_an_amazon_ses_complaint_mailed_by_sns_is_a_complaint() -> None:
    raw = (
        b"From: SES <no-reply@sns.amazonaws.com>\nTo: ops@example.com\n"
        b"Subject: AWS Notification Message\nContent-Type: text/plain; charset=UTF-8\n\n"
        b'{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"ann@exa\n'
        b' mple.org"}],"feedbackId":"x"},"mail":{"source":"news@example.com"}}\n'
        b"--\nunsubscribe: ...\n"
    )
    report = bounce.read(raw)
    assert report.kind is ReportKind.COMPLAINT
    assert report.recipient == "ann@example.org"
