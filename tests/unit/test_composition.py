"""Composition: the bytes of one message, parsed back with the stdlib parser.

Every message must parse without defects, carry each header exactly once,
hold text then HTML that decode back to what was rendered, and never let a
line break in any value become a header of its own."""

from __future__ import annotations

import email
import email.header
import email.policy
import quopri
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.services.composition import (
    HeaderValueError,
    RecipientHeaders,
    SenderHeaders,
    build_skeleton,
    clean_header_text,
    encode_body,
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


SENDER = SenderHeaders(
    from_name="Example Corp",
    from_address="news@example.com",
    reply_to="reply@example.com",
    list_id="Spring newsletter <12.lists.example.com>",
    feedback_id="12:7:newsletter:sluice",
    message_id_domain="example.com",
)
RECIPIENT = RecipientHeaders(
    to_name="Jane Doe",
    to_address="jane@example.org",
    queue_item_id=4711,
    list_unsubscribe_url="https://mail.example.com/u/4711.abc",
    list_unsubscribe_mailto="mailto:bounces+unsubscribe-abc@bounce.example.com?subject=unsubscribe",
    date=datetime(2026, 3, 2, 9, 30, 5, tzinfo=UTC),
)
RENDERED = Rendered(
    subject="Spring news for Jane",
    html='<p style="color:#333">Hello Jane,</p>\n<p>See <a href="https://x.example.com/">this</a>.</p>\n',
    text="Hello Jane,\n\nSee this: https://x.example.com/\n",
)
EXPECTED_HEADERS = {
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Precedence",
    "Feedback-ID",
    "X-Sluice-Queue-Item",
}


def compose(
    rendered: Rendered = RENDERED,
    sender: SenderHeaders = SENDER,
    **recipient: object,
) -> bytes:
    return build_skeleton(sender).compose(rendered, replace(RECIPIENT, **recipient))


def parse(message: bytes, policy: email.policy.Policy = email.policy.default) -> EmailMessage:
    parsed = email.message_from_bytes(message, policy=policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def crlf_body(text: str) -> str:
    """The text with canonical CRLF line breaks (RFC 2046 §4.1.1)."""
    return re.sub(r"\r\n?|\n", "\r\n", text)


def display_name(message: bytes, header: str) -> str:
    """The display name in a mailbox header, decoded exactly.

    Encoded-words are decoded the RFC 2047 way (§6.2: whitespace between
    adjacent encoded-words is not text). Python's address parser gets that
    wrong in phrases (it keeps a space between the words), so it only reads
    names written as atoms or a quoted-string."""
    parsed = parse(message)
    raw = next(
        line for line in unfolded_headers(message) if line.startswith(f"{header}: ")
    ).removeprefix(f"{header}: ")
    if not raw.endswith(">"):
        return ""
    phrase_text = raw.rsplit(" <", 1)[0]
    if phrase_text.startswith("=?utf-8?"):
        return "".join(
            part.decode(charset or "ascii") if isinstance(part, bytes) else part
            for part, charset in email.header.decode_header(phrase_text)
        )
    name: str = parsed[header].addresses[0].display_name
    return name


def unfolded_headers(message: bytes) -> list[str]:
    head = message.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return head.replace("\r\n ", " ").split("\r\n")


def header_lines(message: bytes) -> list[bytes]:
    return message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def test_every_header_is_present_exactly_once() -> None:
    parsed = parse(compose())
    names = [name for name, _ in parsed.items()]
    assert sorted(names) == sorted(EXPECTED_HEADERS)
    assert parsed["From"] == "Example Corp <news@example.com>"
    assert parsed["Reply-To"] == "reply@example.com"
    assert parsed["To"] == "Jane Doe <jane@example.org>"
    assert parsed["Subject"] == "Spring news for Jane"
    assert parsed["Date"] == "Mon, 02 Mar 2026 09:30:05 +0000"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["List-Id"] == "Spring newsletter <12.lists.example.com>"
    assert parsed["List-Unsubscribe"] == (
        "<https://mail.example.com/u/4711.abc>, "
        "<mailto:bounces+unsubscribe-abc@bounce.example.com?subject=unsubscribe>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Precedence"] == "bulk"
    assert parsed["Feedback-ID"] == "12:7:newsletter:sluice"
    assert parsed["X-Sluice-Queue-Item"] == "4711"


def test_multipart_alternative_text_first_then_html_decoding_exactly() -> None:
    parsed = parse(compose())
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert parts[0].get_content() == crlf_body(RENDERED.text)
    assert parts[1].get_content() == crlf_body(RENDERED.html)


@pytest.mark.parametrize("policy", [email.policy.default, email.policy.SMTP, email.policy.compat32])
def test_the_parser_finds_no_defects(policy: email.policy.Policy) -> None:
    unicode_rendered = Rendered(
        subject="Frühling für Zoë — ☃ " * 6,
        html="<p>" + "é" * 300 + "</p>\nFrom the team\n.\n=\n",
        text="Grüße \t\nFrom us\n" + "x" * 200,
    )
    message = compose(unicode_rendered, to_name="Zoë Müller", test=True)
    parsed = email.message_from_bytes(message, policy=policy)
    for part in parsed.walk():
        assert part.defects == []
        for name, value in part.items():
            assert getattr(value, "defects", ()) == (), name


def test_line_endings_are_crlf_and_lines_short() -> None:
    message = compose(Rendered("Hi", "a\nb\rc\r\nd" + "y" * 500, "t\n" * 3))
    assert b"\r" not in message.replace(b"\r\n", b"")
    assert b"\n" not in message.replace(b"\r\n", b"")
    assert max(len(line) for line in message.split(b"\r\n")) <= 78


def test_send_test_prefixes_the_subject_and_adds_the_test_header() -> None:
    parsed = parse(compose(test=True))
    assert parsed["Subject"] == "[TEST] Spring news for Jane"
    assert parsed["X-Sluice-Test"] == "yes"
    assert "X-Sluice-Test" not in parse(compose())


def test_mailto_is_omitted_when_empty() -> None:
    parsed = parse(compose(list_unsubscribe_mailto=""))
    assert parsed["List-Unsubscribe"] == "<https://mail.example.com/u/4711.abc>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_one_click_post_only_with_an_https_url() -> None:
    # RFC 8058 §3: one-click needs HTTPS; a plain-HTTP development site keeps
    # List-Unsubscribe alone.
    parsed = parse(compose(list_unsubscribe_url="http://127.0.0.1:5000/u/1.abc"))
    assert parsed["List-Unsubscribe"].startswith("<http://127.0.0.1:5000/u/1.abc>")
    assert "List-Unsubscribe-Post" not in parsed


def test_message_id_names_the_queue_item_and_differs_every_time() -> None:
    skeleton = build_skeleton(SENDER)
    ids = {parse(skeleton.compose(RENDERED, RECIPIENT))["Message-ID"] for _ in range(20)}
    assert len(ids) == 20
    for message_id in ids:
        assert re.fullmatch(r"<q4711\.[0-9a-f]{16}@example\.com>", message_id)


def test_date_keeps_the_given_offset_and_refuses_a_naive_datetime() -> None:
    berlin = datetime(2026, 3, 2, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    assert parse(compose(date=berlin))["Date"] == "Mon, 02 Mar 2026 10:30:00 +0100"
    with pytest.raises(HeaderValueError, match="Date"):
        compose(date=datetime(2026, 3, 2, 10, 30))  # naive: the point of the test


def test_the_boundary_cannot_occur_in_quoted_printable_parts() -> None:
    message = compose(Rendered("Hi", "=_ --=_sluice_ =" * 40, "=_sluice_\n--=_\n"))
    boundary = parse(message).get_boundary()
    assert boundary is not None and boundary.startswith("=_")
    # Only the three delimiter lines mention it.
    assert message.count(boundary.encode()) == 4  # Content-Type parameter + 3 delimiters


def test_quoted_printable_rules() -> None:
    text = "a=b \nFrom here\n.\n" + "é" * 100 + "\n" + "From " + "z" * 80 + "\n"
    encoded = encode_body(text)
    assert quopri.decodestring(encoded) == crlf_body(text).encode()
    lines = encoded.split(b"\r\n")
    assert lines[0] == b"a=3Db=20"  # "=" and trailing whitespace encoded
    assert lines[1] == b"=46rom here"  # mbox-safe
    assert lines[2] == b"=2E"  # a lone "." line
    assert all(len(line) <= 76 for line in lines)
    # Never split inside an escape: every "=" starts "=XX" or a soft break.
    assert all(re.fullmatch(rb"(?:[^=]|=[0-9A-F]{2})*=?", line) for line in lines)


def test_non_ascii_names_and_subject_are_encoded_words() -> None:
    message = compose(
        Rendered("Grüße aus Köln", "<p>x</p>", "x"),
        sender=replace(SENDER, from_name="Zoë & Co"),
        to_name="Jürgen Müller",
    )
    assert message.isascii()
    parsed = parse(message)
    assert parsed["Subject"] == "Grüße aus Köln"
    assert display_name(message, "From") == "Zoë & Co"
    assert display_name(message, "To") == "Jürgen Müller"
    assert b"=?utf-8?" in message


def test_long_subject_folds_without_splitting_a_character() -> None:
    subject = "Ünïcödé ☃ 日本語のニュースレター " * 12
    message = compose(Rendered(subject, "x", "x"))
    lines = [line for line in header_lines(message) if line.startswith((b"Subject:", b" =?"))]
    assert len(lines) > 3
    assert all(len(line) <= 78 for line in lines)
    for word in re.findall(rb"=\?utf-8\?([qb])\?([^?]*)\?=", message):
        assert len(word[1]) + 12 <= 75
        raw = (
            email.header.decode_header(f"=?utf-8?{word[0].decode()}?{word[1].decode()}?=")[0][0]
            if word[1]
            else b""
        )
        assert isinstance(raw, bytes)
        raw.decode("utf-8")  # each word holds whole characters
    assert parse(message)["Subject"] == clean_header_text(subject)


def test_long_ascii_subject_folds_at_spaces() -> None:
    subject = "Spring  news " * 15
    message = compose(Rendered(subject, "x", "x"))
    assert b"=?" not in message.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in header_lines(message))
    assert parse(message)["Subject"] == subject.strip()


def test_ascii_that_reads_as_an_encoded_word_stays_literal() -> None:
    subject = "=?utf-8?q?not_decoded?= please"
    name = "=?utf-8?b?SGk=?="
    parsed = parse(compose(Rendered(subject, "x", "x"), to_name=name))
    assert parsed["Subject"] == subject
    assert parsed["To"].addresses[0].display_name == name


def test_a_line_break_in_the_subject_injects_nothing() -> None:
    subject = "Hello\r\nBcc: victim@example.net\r\n\r\nbody?\x00\x07 end\u2028X-Evil: 1"
    parsed = parse(compose(Rendered(subject, "x", "x")))
    assert set(parsed.keys()) == EXPECTED_HEADERS
    assert parsed["Subject"] == "Hello Bcc: victim@example.net body? end X-Evil: 1"


def test_a_line_break_in_a_display_name_injects_nothing() -> None:
    sender = replace(SENDER, from_name="Corp\r\nBcc: a@example.net", list_id="L\n2 <l.example.com>")
    parsed = parse(compose(sender=sender, to_name="Jane\nX-Evil: 1\x00"))
    assert set(parsed.keys()) == EXPECTED_HEADERS
    assert parsed["From"].addresses[0].display_name == "Corp Bcc: a@example.net"
    assert parsed["To"].addresses[0].display_name == "Jane X-Evil: 1"
    assert parsed["List-Id"] == "L 2 <l.example.com>"


BAD_VALUES = ["a\r\nBcc: b@example.net", "a\n@example.net", "x\x00@example.com", "a b@example.com"]


@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize(
    ("header", "field"),
    [("To", "to_address"), ("List-Unsubscribe", "list_unsubscribe_url")],
)
def test_a_recipient_address_or_url_with_a_line_break_is_refused(
    header: str, field: str, bad: str
) -> None:
    value = bad if field == "to_address" else "https://x.example.com/u/" + bad
    with pytest.raises(HeaderValueError, match=header):
        compose(**{field: value})


@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("From", "from_address"),
        ("Reply-To", "reply_to"),
        ("Message-ID", "message_id_domain"),
        ("List-Id", "list_id"),
        ("Feedback-ID", "feedback_id"),
    ],
)
def test_a_sender_value_with_a_line_break_is_refused(header: str, field: str, bad: str) -> None:
    value = bad.replace("@", ".") if field in {"message_id_domain", "list_id"} else bad
    with pytest.raises(HeaderValueError, match=header):
        build_skeleton(replace(SENDER, **{field: value}))


def test_a_mailto_with_a_line_break_is_refused() -> None:
    with pytest.raises(HeaderValueError, match="List-Unsubscribe"):
        compose(list_unsubscribe_mailto="mailto:a@example.com\r\nBcc: b@example.net")


@pytest.mark.parametrize(
    "address",
    [
        "jane",
        "jane@",
        "@example.org",
        "jane@@example.org",
        "a@b@example.org",
        "<jane@example.org>",
        "jane@example.org,john@example.org",
        '"jane doe"@example.org',
        "jane..doe@example.org",
        "jane@exa mple.org",
        "jane@-example.org",
        "jane@example..org",
    ],
)
def test_addresses_are_checked_structurally(address: str) -> None:
    with pytest.raises(HeaderValueError, match="To"):
        compose(to_address=address)


def test_idna_domain_and_smtputf8_refusal() -> None:
    parsed = parse(compose(to_address="juergen@bücher.example"))
    assert parsed["To"].addresses[0].addr_spec == "juergen@xn--bcher-kva.example"
    with pytest.raises(HeaderValueError, match="SMTPUTF8"):
        compose(to_address="jürgen@example.org")


def test_an_empty_display_name_gives_a_bare_address() -> None:
    parsed = parse(compose(to_name=" \r\n "))
    assert parsed["To"] == "jane@example.org"


def test_no_reply_to_when_the_sender_has_none() -> None:
    parsed = parse(compose(sender=replace(SENDER, reply_to="")))
    assert "Reply-To" not in parsed


@pytest.mark.parametrize("item", [-1, True, "7"])
def test_a_bad_queue_item_id_is_refused(item: object) -> None:
    with pytest.raises(HeaderValueError, match="X-Sluice-Queue-Item"):
        compose(queue_item_id=item)


# Text with everything that could break a header or a body: line breaks of
# every kind, NUL and other controls, "=?" and "From ", long words.
_NASTY = st.sampled_from(
    [
        *["\r", "\n", "\r\n", "\x00", "\t", "\x0b", "\x1f", "\x7f", "\x85", "\u2028", "\u2029"],
        *[" ", "  ", "=?", "?=", "=", "_", '"', "\\", "<", ">", ",", ";", ":", "(", "From ", "."],
        *["x" * 90, "é" * 40, "日本語" * 20, "\U0001f600", "\u3000", "\xa0", "\ufeff"],
    ]
)
_TEXT = st.lists(st.one_of(st.characters(codec="utf-8"), _NASTY), max_size=40).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=_TEXT, to_name=_TEXT, from_name=_TEXT, html=_TEXT, text=_TEXT, test=st.booleans())
def test_random_text_never_injects_a_header_and_round_trips(
    subject: str, to_name: str, from_name: str, html: str, text: str, test: bool
) -> None:
    message = compose(
        Rendered(subject, html, text),
        sender=replace(SENDER, from_name=from_name),
        to_name=to_name,
        test=test,
    )
    assert message.isascii()
    assert all(len(line) <= 998 for line in message.split(b"\r\n"))
    assert all(len(line) <= 78 for line in header_lines(message))
    assert b"\r" not in message.replace(b"\r\n", b"")
    assert b"\n" not in message.replace(b"\r\n", b"")
    parsed = parse(message)
    expected_names = EXPECTED_HEADERS | ({"X-Sluice-Test"} if test else set())
    assert sorted(parsed.keys()) == sorted(expected_names)
    expected_subject = clean_header_text(("[TEST] " if test else "") + subject)
    assert parsed["Subject"] == expected_subject
    assert display_name(message, "To") == clean_header_text(to_name)
    assert display_name(message, "From") == clean_header_text(from_name)
    plain, rich = parsed.iter_parts()
    assert plain.get_content() == crlf_body(text)
    assert rich.get_content() == crlf_body(html)
    assert all(not part.defects for part in parsed.walk())


_LINES = st.lists(
    st.text(alphabet=st.sampled_from("ab =.\t\x0béF\u2028rom"), max_size=120), max_size=6
)


@given(lines=_LINES, separators=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), max_size=6))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_quoted_printable_line_by_line_decodes_to_the_text_every_time(
    lines: list[str], separators: list[str]
) -> None:
    # Lines are encoded one by one and remembered: whether a line is met
    # for the first time or again, the body decodes to the text, its lines
    # within 76 characters, trailing whitespace encoded, "From " escaped.
    text = "".join(line + sep for line, sep in zip(lines, separators + ["\n"] * 6, strict=False))
    first, again = encode_body(text), encode_body(text)
    assert first == again
    assert quopri.decodestring(first) == crlf_body(text).encode()
    for line in first.split(b"\r\n"):
        assert len(line) <= 76
        assert not line.endswith((b" ", b"\t"))
        assert not line.startswith(b"From ")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(alphabet=st.sampled_from(". aZ=\n\r\té€"), max_size=400),
    html=st.text(alphabet=st.sampled_from(".<a>x =\n"), max_size=400),
)
def test_compose_says_whether_a_line_starts_with_a_dot(text: str, html: str) -> None:
    """The dispatcher skips SMTP's scan for dot lines when compose says there
    are none: a wrong "none" would let the relay cut the message short."""
    data, dot_lines = build_skeleton(SENDER).compose_for_smtp(
        Rendered("Hello", html, text), RECIPIENT
    )
    assert dot_lines == (data.startswith(b".") or b"\n." in data)


def test_a_soft_break_before_a_dot_counts_as_a_dot_line() -> None:
    html = "x" * 75 + ".hidden"  # b2a_qp breaks after 75 characters
    data, dot_lines = build_skeleton(SENDER).compose_for_smtp(
        Rendered("Hello", html, "plain"), RECIPIENT
    )
    assert b"=\r\n.hidden" in data and dot_lines
    assert not build_skeleton(SENDER).compose_for_smtp(RENDERED, RECIPIENT)[1]
