"""SpamAssassin's verdict on a composed message (``spam_score``), and the
parsing of its ``X-Spam-Status`` header."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from app.services.composition import RecipientHeaders, SenderHeaders, build_skeleton
from app.services.spam_score import SpamCheckError, SpamScore, parse_spam_status, spam_score
from tests.conftest import service_missing


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def newsletter() -> bytes:
    sender = SenderHeaders(
        "Example Corp",
        "news@example.com",
        "reply@example.com",
        "Spring newsletter <12.lists.example.com>",
        "12:7:newsletter:sluice",
        "example.com",
    )
    recipient = RecipientHeaders(
        "Jane Doe",
        "jane@example.org",
        7,
        "https://mail.example.com/u/7.abc",
        "mailto:bounces+unsubscribe-7.abc@bounce.example.com?subject=unsubscribe",
        datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    )
    html = (
        "<html><body><p>Hello Jane,</p>\n<p>Our spring programme is out: talks, walks and a"
        ' market on the square. <a href="https://www.example.com/spring">Read it</a>.</p>\n'
        '<p><a href="https://mail.example.com/u/7.abc">Unsubscribe</a> · Example Corp,'
        " 1 Example Street, Springfield</p></body></html>\n"
    )
    text = (
        "Hello Jane,\n\nOur spring programme is out: talks, walks and a market on the square.\n"
        "Read it: https://www.example.com/spring\n\n"
        "Unsubscribe: https://mail.example.com/u/7.abc\n"
        "Example Corp, 1 Example Street, Springfield\n"
    )
    rendered = Rendered("Our spring programme", html, text)
    return build_skeleton(sender).compose(rendered, recipient)


def test_a_composed_newsletter_is_scored_and_not_spam() -> None:
    if shutil.which("spamassassin") is None:
        service_missing("spamassassin is not installed (make system-packages)")
    result = spam_score(newsletter())
    assert result is not None
    assert result.threshold == 5.0
    assert all(rule.isupper() for rule in result.rules)
    assert not result.is_spam, result


def test_no_spamassassin_gives_none() -> None:
    assert spam_score(newsletter(), command="no-such-spamassassin-binary") is None


def test_a_folded_status_header_is_read() -> None:
    output = (
        b"Received: by x\r\n"
        b"X-Spam-Checker-Version: SpamAssassin 4.0.1\r\n"
        b"X-Spam-Status: Yes, score=7.3 required=5.0\r\n"
        b"\ttests=HTML_MESSAGE,MISSING_DATE,\r\n"
        b"\tNO_RECEIVED,NO_RELAYS autolearn=no autolearn_force=no version=4.0.1\r\n"
        b"Subject: x\r\n\r\nX-Spam-Status: No, score=0.0 required=5.0 tests=none\r\n"
    )
    assert parse_spam_status(output) == SpamScore(
        7.3, 5.0, ("HTML_MESSAGE", "MISSING_DATE", "NO_RECEIVED", "NO_RELAYS")
    )
    assert parse_spam_status(b"X-Spam-Status: No, score=-0.1 required=5.0 tests=none\n\n") == (
        SpamScore(-0.1, 5.0, ())
    )


def test_output_without_a_status_header_is_an_error() -> None:
    with pytest.raises(SpamCheckError, match="X-Spam-Status"):
        parse_spam_status(b"Subject: x\r\n\r\nbody\r\n")
