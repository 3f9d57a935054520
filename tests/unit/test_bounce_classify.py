"""The rule table of ``bounce.classify``: each rule a user relies on."""

from __future__ import annotations

import pytest

from bounce import BounceReport, RecipientReport, ReportKind, classify
from bounce.classify import STATUS_REASONS, TEXT_PATTERNS, kind_of
from bounce.smtp import find_command, prefer, status_codes


def one(status: str | None, diagnostic: str, command: str | None = None) -> BounceReport:
    item = RecipientReport(
        recipient="someone@example.org",
        action="failed",
        status=status,
        diagnostic=diagnostic,
        command=command,
    )
    return classify(BounceReport(is_bounce=True, recipients=(item,)))


@pytest.mark.parametrize(
    ("status", "diagnostic", "reason", "kind"),
    [
        ("5.1.1", "550 5.1.1 <someone@example.org>: User unknown", "userunknown", "hard"),
        ("5.1.2", "550 5.1.2 Host unknown", "hostunknown", "hard"),
        ("5.1.6", "550 5.1.6 Mailbox has moved", "hasmoved", "hard"),
        ("5.1.10", "550 5.1.10 Recipient address has null MX", "notaccept", "hard"),
        ("4.3.2", "421 4.3.2 System not accepting network messages", "notaccept", "soft"),
        ("5.2.2", "552 5.2.2 Mailbox full", "mailboxfull", "soft"),
        ("4.2.2", "452 4.2.2 Over quota", "mailboxfull", "soft"),
        ("5.7.1", "554 5.7.1 Delivery not authorized", "securityerror", "soft"),
        ("5.7.1", "554 5.7.1 Message rejected as spam", "spamdetected", "soft"),
        ("5.3.4", "552 5.3.4 Message too big for system", "mesgtoobig", "soft"),
        ("4.4.7", "Delivery time expired", "expired", "soft"),
    ],
)
def test_status_codes_decide_when_the_text_agrees(
    status: str, diagnostic: str, reason: str, kind: str
) -> None:
    report = one(status, diagnostic)
    assert (report.reason, report.kind) == (reason, ReportKind(kind))


def test_a_user_unknown_code_contradicted_by_the_text_is_not_hard() -> None:
    # RFC 3463 says 5.1.1 is a bad mailbox, but the words are about a full
    # mailbox: a false hard bounce would suppress a good address.
    report = one("5.1.1", "550 5.1.1 <someone@example.org>... Mailbox full")
    assert report.kind is ReportKind.SOFT
    assert report.reason == "mailboxfull"


def test_a_reply_to_mail_from_never_makes_the_recipient_unknown() -> None:
    report = one("5.1.0", "SMTP error after MAIL FROM:<me@example.com>: 553 5.1.0 sender rejected")
    assert report.kind is ReportKind.SOFT


def test_user_unknown_words_need_the_rcpt_stage_to_be_hard() -> None:
    # The same words after DATA come from a content filter (Sisimai's
    # "filtered"): only the reply to RCPT TO proves the mailbox is missing.
    assert one(None, "550 Unknown user", command="RCPT").kind is ReportKind.HARD
    assert one(None, "550 Unknown user", command="DATA").reason == "filtered"
    assert one(None, "550 Unknown user").kind is ReportKind.SOFT


def test_the_command_is_read_from_the_diagnostic_when_not_given() -> None:
    report = one(
        None, "SMTP error from remote mail server after RCPT TO:<a@b.example>: 550 No such user"
    )
    assert report.kind is ReportKind.HARD
    assert report.recipients[0].command is None  # the parser's field is left as given


def test_an_addressing_code_outside_the_table_with_unknown_user_text_is_hard() -> None:
    # Microsoft's 5.1.351: an RFC 3463 addressing status (X.1.Y).
    report = one("5.1.351", "550 5.1.351 Remote server returned unknown recipient")
    assert report.reason == "userunknown"


def test_a_non_smtp_diagnostic_is_the_local_mailer_not_the_mailbox() -> None:
    report = one("5.1.1", "X-Unix; procmail: Couldn't create /var/mail/x: No such user")
    assert report.kind is ReportKind.SOFT
    assert report.reason == "mailererror"


def test_delayed_without_a_reason_is_expired_and_soft() -> None:
    item = RecipientReport(recipient="a@example.org", action="delayed", status="4.0.0")
    report = classify(BounceReport(is_bounce=True, recipients=(item,)))
    assert (report.reason, report.kind) == ("expired", ReportKind.SOFT)


def test_only_delivered_recipients_make_no_bounce() -> None:
    item = RecipientReport(recipient="a@example.org", action="delivered", status="2.0.0")
    report = classify(BounceReport(is_bounce=True, recipients=(item,)))
    assert not report.is_bounce
    assert report.kind is None


def test_complaints_and_auto_replies_keep_their_kind() -> None:
    complaint = BounceReport(kind=ReportKind.COMPLAINT, reason="feedback")
    assert classify(complaint) == complaint
    assert kind_of("vacation", None) is ReportKind.AUTOREPLY


def test_the_top_level_describes_the_first_failed_recipient() -> None:
    items = (
        RecipientReport(recipient="ok@example.org", action="delivered", status="2.0.0"),
        RecipientReport(recipient="gone@example.org", action="failed", status="5.1.1",
                        diagnostic="550 5.1.1 User unknown"),
    )  # fmt: skip
    report = classify(BounceReport(is_bounce=True, recipients=items))
    assert report.recipient == "gone@example.org"
    assert report.kind is ReportKind.HARD
    assert report.status == "5.1.1"


def test_the_rule_table_is_lower_case_and_names_known_reasons() -> None:
    for reason, patterns in TEXT_PATTERNS.items():
        assert reason.islower()
        for pattern in patterns:
            assert pattern == pattern.lower(), pattern
    for code in STATUS_REASONS:
        assert status_codes(code) == [code]


def test_status_codes_are_not_found_in_addresses_or_versions() -> None:
    assert status_codes("host 192.0.2.1 said 550 5.1.1 no") == ["5.1.1"]
    assert status_codes("Postfix 3.5.10.2 relay") == []


def test_command_names_inside_words_are_not_commands() -> None:
    assert find_command("DATABASE@EXAMPLE.JP rejected") is None
    assert find_command(">>> RCPT To:<a@b> <<< 550 no") == "RCPT"
    assert find_command("after RCPT TO, then DATA: 554") == "DATA"


def test_the_quoted_code_wins_over_a_vague_status_field() -> None:
    assert prefer("5.0.0", "5.1.1", "550") == "5.1.1"
    assert prefer("5.1.1", "5.0.0", "550") == "5.1.1"
    assert prefer("4.4.7", "5.1.1", "550") == "5.1.1"
    assert prefer(None, "5.2.2", None) == "5.2.2"
