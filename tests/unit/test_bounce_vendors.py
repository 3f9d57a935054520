"""Vendor rules (``bounce.vendors``): the same words, a different verdict
depending on the mail system that wrote them or the provider that answered."""

from __future__ import annotations

import pytest

import bounce
from bounce import BounceReport, RecipientReport, ReportKind, classify
from bounce.smtp import find_command
from bounce.vendors import provider_of


def one(
    recipient: str,
    diagnostic: str,
    *,
    status: str | None = None,
    command: str | None = None,
    remote_mta: str | None = None,
    reporting_mta: str | None = None,
    reporter: str | None = None,
) -> BounceReport:
    item = RecipientReport(
        recipient=recipient,
        action="failed",
        status=status,
        diagnostic=diagnostic,
        command=command,
        remote_mta=remote_mta,
    )
    report = BounceReport(
        is_bounce=True, recipients=(item,), reporter=reporter, reporting_mta=reporting_mta
    )
    return classify(report)


def test_au_kddi_tells_its_content_filter_from_a_missing_mailbox() -> None:
    # au's "550 : User unknown" refuses the sender; "550 <addr>: User
    # unknown" names a mailbox that does not exist (Sisimai rhost KDDI).
    missing = one("cat@ezweb.ne.jp", "550 <cat@ezweb.ne.jp>: User unknown", status="5.0.0")
    filtered = one("cat@ezweb.ne.jp", "550 : User unknown", status="5.1.1")
    assert (missing.reason, missing.kind) == ("userunknown", ReportKind.HARD)
    assert (filtered.reason, filtered.kind) == ("filtered", ReportKind.SOFT)


def test_messagelabs_no_such_user_is_hard_only_from_messagelabs() -> None:
    text = "550 ann@example.org... No such user"
    relayed = one(
        "ann@example.org", text, status="5.0.0", reporting_mta="server-1.mx.messagelabs.com"
    )
    elsewhere = one("ann@example.org", text, status="5.0.0", reporting_mta="mx.example.net")
    assert (relayed.reason, relayed.kind) == ("userunknown", ReportKind.HARD)
    # Without proof it answered RCPT TO, the same words are a filter's.
    assert elsewhere.kind is ReportKind.SOFT


def test_messagelabs_542_rejected_refuses_the_recipient() -> None:
    report = one(
        "ann@example.org",
        "542 ann@example.org Rejected",
        status="5.0.0",
        reporting_mta="server-9.bemta-3.messagelabs.com",
    )
    assert report.kind is ReportKind.HARD


def test_outlook_mailbox_unavailable_is_a_missing_mailbox() -> None:
    text = "550 Requested action not taken: mailbox unavailable (-12:34:-12)"
    hotmail = one("ann@example.org", text, status="5.5.0", reporting_mta="BAY4-DSN1.hotmail.com")
    unknown = one("ann@example.org", text, status="5.5.0", reporting_mta="mx.example.net")
    assert (hotmail.reason, hotmail.kind) == ("userunknown", ReportKind.HARD)
    assert unknown.kind is ReportKind.SOFT


def test_the_remote_host_named_in_a_postfix_text_selects_the_provider() -> None:
    report = one(
        "ann@example.org",
        "host mx1.example-org.mail.protection.outlook.com[192.0.2.1] said: "
        "550 5.5.0 Requested action not taken: mailbox unavailable",
        status="5.5.0",
    )
    assert report.kind is ReportKind.HARD


def test_aol_malformed_mx_answer_is_a_domain_that_accepts_no_mail() -> None:
    report = one(
        "ann@example.org",
        "X-Outbound-Mail-Relay; Name service error for name=example.org type=MX: "
        "Malformed or unexpected name server reply",
        status="5.4.4",
        reporting_mta="omr-a01.mx.aol.com",
    )
    assert (report.reason, report.kind) == ("notaccept", ReportKind.HARD)


def test_microsoft_banned_recipient_code_is_a_suspended_account_not_a_missing_one() -> None:
    report = one(
        "ann@example.org",
        "550 5.7.504 Recipient address rejected: Access denied",
        status="5.7.504",
        remote_mta="example-org.mail.protection.outlook.com",
        command="RCPT",
    )
    assert (report.reason, report.kind) == ("suspend", ReportKind.SOFT)


def test_docomo_unknown_user_is_decided_by_the_command_it_answered() -> None:
    text = "550 Unknown user ann@docomo.ne.jp"
    at_rcpt = one("ann@docomo.ne.jp", text, status="5.0.0", command="RCPT")
    at_data = one("ann@docomo.ne.jp", text, status="5.0.0", command="DATA")
    assert at_rcpt.kind is ReportKind.HARD
    assert (at_data.reason, at_data.kind) == ("rejected", ReportKind.SOFT)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("550 5.1.1 Adresse d au moins un destinataire invalide. LPN007_416", "userunknown"),
        ("552 5.1.1 Boite du destinataire pleine. OFR_417 [417]", "mailboxfull"),
        ("550 5.5.0 Boite du destinataire archivee. LPN007_420", "suspend"),
    ],
)
def test_orange_and_la_poste_error_labels_name_the_reason(text: str, reason: str) -> None:
    report = one("ann@orange.fr", text, status="5.1.1")
    assert report.reason == reason


def test_a_provider_domain_is_matched_on_a_label_boundary() -> None:
    assert provider_of("ann@aol.com", None, None, "") == "aol"
    assert provider_of("ann@l.com", None, None, "") is None
    assert provider_of("ann@example.org", "mx.mail.icloud.com", None, "") == "apple"
    assert provider_of("ann@example.org", None, None, "") is None


# --- reporters: recognised by the parser from the bounce's own headers ---


def interscan(body: str) -> bytes:
    return (
        'From: postmaster@gw.example.net ("InterScan Notification")\n'
        "To: sender@example.com\nSubject: Mail could not be delivered\n"
        'Content-Type: multipart/mixed; boundary="------------InterScan_NT_MIME_Boundary"\n\n'
        "--------------InterScan_NT_MIME_Boundary\nContent-type: text/plain\n\n"
        f"{body}\n"
        "--------------InterScan_NT_MIME_Boundary\nContent-type: message/rfc822\n\n"
        "From: sender@example.com\nTo: ann@example.org\nSubject: hello\n\nhi\n"
        "--------------InterScan_NT_MIME_Boundary--\n"
    ).encode()


def test_trend_micro_unable_to_deliver_is_a_refused_address() -> None:
    report = bounce.read(
        interscan(
            "****** Message from InterScan Messaging Security Suite ******\n"
            "Unable to deliver message to <ann@example.org> (and other recipients in the "
            "same domain).\n"
        )
    )
    assert report.reporter == "trendmicro"
    assert (report.recipient, report.reason, report.kind) == (
        "ann@example.org",
        "userunknown",
        ReportKind.HARD,
    )


def ezweb(notice: str) -> bytes:
    return (
        "From: Mail Administrator <Postmaster@ezweb.ne.jp>\n"
        "Subject: Mail System Error - Returned Mail\nTo: sender@example.com\n"
        "Message-Id: <20240101000000.A1@lsean.ezweb.ne.jp>\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        f"--B\nContent-Type: text/plain\n\n{notice}\n\n"
        "<cat@ezweb.ne.jp>: 550 user unknown (in reply to RCPT TO command)\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; lsean.ezweb.ne.jp\n\n"
        "Final-Recipient: rfc822; cat@ezweb.ne.jp\nAction: failed\nStatus: 5.0.0\n\n"
        "--B--\n"
    ).encode()


def test_ezweb_states_the_reason_above_its_recipients() -> None:
    # The reply says "user unknown" at RCPT TO, but EZweb's notice says the
    # account is disabled: a suspended account, not a missing one.
    report = bounce.read(ezweb("The user(s) account is disabled."))
    assert report.reporter == "ezweb"
    assert report.reporting_mta == "lsean.ezweb.ne.jp"
    assert (report.reason, report.kind) == ("suspend", ReportKind.SOFT)
    assert report.diagnostic and report.diagnostic.startswith("The user(s) account is disabled.")


def test_without_ezweb_s_notice_the_reply_decides() -> None:
    report = bounce.read(ezweb("Your mail could not be delivered."))
    assert (report.reason, report.kind) == ("userunknown", ReportKind.HARD)


def apache_james(sender: str) -> bytes:
    return (
        f"From: {sender}\nTo: sender@example.com\nSubject: Re: hello\n"
        "Message-ID: <1.2.JavaMail.mail@gw.example.net>\n"
        "Content-Type: text/plain; charset=us-ascii\n\n"
        "Error: Invalid user address\n\nError message below:\n"
        "550 - Requested action not taken: no such user here\n\n"
        "Message details:\n  Subject: hello\n  MAIL FROM: sender@example.com\n"
        "  RCPT TO: 5551234567@vtext.example.net\n  From: sender@example.com\n"
    ).encode()


def test_an_envelope_summary_is_no_proof_the_reply_answered_rcpt_to() -> None:
    # Apache James lists the envelope under "Message details:"; the reply
    # itself does not say which command it answered.
    report = bounce.read(apache_james("postmaster@gw.example.net"))
    assert report.recipient == "5551234567@vtext.example.net"
    assert (report.reason, report.kind) == ("filtered", ReportKind.SOFT)


def test_verizon_s_gateway_refuses_an_unknown_number() -> None:
    report = bounce.read(apache_james("post_master@vtext.com"))
    assert report.reporter == "verizon"
    assert (report.reason, report.kind) == ("userunknown", ReportKind.HARD)


def test_a_sendmail_transcript_names_the_command_of_its_recipient() -> None:
    raw = (
        b"From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>\n"
        b"To: sender@example.com\nSubject: Returned mail: User unknown\n\n"
        b"   ----- Transcript of session follows -----\n"
        b"While talking to mx.example.org:\n"
        b">>> RCPT To:<ann@example.org>\n"
        b"<<< 550 <ann@example.org>, User Unknown\n"
        b"550 <ann@example.org>... User unknown\n"
        b"   ----- Unsent message follows -----\n"
        b"From: sender@example.com\nTo: ann@example.org\nSubject: hi\n\nhi\n"
    )
    report = bounce.read(raw)
    assert report.recipients[0].command == "RCPT"
    assert (report.recipient, report.kind) == ("ann@example.org", ReportKind.HARD)


def test_the_reporting_host_falls_back_to_the_host_that_handed_the_bounce_over() -> None:
    raw = (
        b"Received: from mx.example.net (mx.example.net [192.0.2.7])\n"
        b"\tby inbound.example.com with ESMTP id 1\n"
        b"From: MAILER-DAEMON@mx.example.net\nTo: sender@example.com\n"
        b"Subject: failure notice\n\n"
        b"<ann@example.org>:\n192.0.2.9 does not like recipient.\n"
        b"Remote host said: 550 5.1.1 <ann@example.org>: Recipient address rejected\n"
    )
    report = bounce.read(raw)
    assert report.reporting_mta == "mx.example.net"


def test_find_command_skips_envelope_summaries_not_transcripts() -> None:
    assert find_command("  RCPT TO: ann@example.org") is None
    assert find_command(">>> RCPT To:<ann@example.org>\n<<< 550 User unknown") == "RCPT"
