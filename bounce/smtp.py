"""SMTP facts quoted in bounce text: enhanced status codes (RFC 3463),
reply codes (RFC 5321 §4.2) and the command a reply answered."""

from __future__ import annotations

import re

# class.subject.detail (RFC 3463 §2): class 2, 4 or 5, subject 0-7, detail
# up to three digits. Not part of a longer dotted number (IP addresses,
# version strings).
ENHANCED_STATUS = re.compile(r"(?<![\w.])([245])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
# A reply code: three digits at the start of a reply line, followed by a
# space, a hyphen (continuation) or the end of the line (RFC 5321 §4.2).
REPLY_CODE = re.compile(r"(?<![\w.#/-])([245][0-5][0-9])(?=[ -]|$)", re.M)

# Commands in the order Sisimai's smtp/command looks for them: when several
# are named, the one latest in the session wins.
_COMMANDS: tuple[tuple[str, str], ...] = (
    ("HELO", "HELO"),
    ("EHLO", "EHLO"),
    ("STARTTLS", "STARTTLS"),
    ("AUTH PLAIN", "AUTH"),
    ("AUTH LOGIN", "AUTH"),
    ("AUTH CRAM-", "AUTH"),
    ("AUTH DIGEST-", "AUTH"),
    ("MAIL F", "MAIL"),
    ("RCPT", "RCPT"),
    ("DATA", "DATA"),
)
_SESSION_ORDER = {"CONN": 0, "HELO": 1, "EHLO": 1, "STARTTLS": 2, "AUTH": 3, "MAIL": 4, "RCPT": 5}
_SESSION_ORDER["DATA"] = 6
BEFORE_DATA = frozenset({"CONN", "EHLO", "HELO", "MAIL", "RCPT"})


def status_codes(text: str) -> list[str]:
    """Every enhanced status code in ``text``, in order."""
    return [".".join(match.groups()) for match in ENHANCED_STATUS.finditer(text)]


# RFC 2034 §4: a server puts its enhanced code right after the reply code.
_REPLY_WITH_STATUS = re.compile(
    r"(?<![\w.])([245]\d\d)[ -]['\"]?([245]\.[0-7]\.\d{1,3})(?![\w]|\.\d)"
)


def reply_status(text: str) -> str | None:
    """The enhanced code of the first quoted server reply (``550 5.1.1``,
    ``550-'5.7.1``) whose class agrees with its reply code."""
    for match in _REPLY_WITH_STATUS.finditer(text):
        if match.group(1)[0] == match.group(2)[0]:
            return match.group(2)
    return None


def first_status(text: str, exclude: str | None = None) -> str | None:
    """The first enhanced status code in ``text`` other than ``exclude``
    (or ``exclude`` itself when it is the only one)."""
    codes = status_codes(text)
    for code in codes:
        if code != exclude:
            return code
    return codes[0] if codes else None


def prefer(field: str | None, in_text: str | None, reply: str | None) -> str | None:
    """Choose between a DSN's ``Status`` field and the code quoted in its
    diagnostic (Sisimai's smtp/status Prefer, rule by rule):

    the one whose class agrees with the reply code; else the more specific
    one (``X.0.0`` and ``X.Y.0`` say less than the quoted reply); else the
    quoted code when the field is one relays use for anything (4.4.7
    expired, 4.7.0, 5.3.x, X.5.1/2/4/5); else the field."""
    if not field or not in_text or field == in_text:
        return field or in_text
    if reply and field[0] != in_text[0]:
        if reply[0] == field[0]:
            return field
        if reply[0] == in_text[0]:
            return in_text
    field_zero, text_zero = ".0" in field, ".0" in in_text
    if field.endswith(".0.0") or (len(field.split(".")) == 3 and field.split(".")[1] == "0"):
        return field if text_zero and ".0.0" in in_text else in_text
    if field_zero and not text_zero:
        return in_text
    if ".0.0" in in_text:
        return field
    if (
        field in ("4.4.7", "4.7.0")
        or field.startswith("5.3.")
        or field[1:4] in (".5.1", ".5.2", ".5.4", ".5.5")
    ):
        return in_text
    if field == "5.1.1":
        return field if text_zero or in_text.startswith("5.5.") else in_text
    if field == "5.1.3" and in_text.startswith("5.7."):
        return in_text
    return field


def reply_code(text: str) -> str | None:
    """The first SMTP reply code quoted in ``text`` (4xx/5xx preferred)."""
    codes = REPLY_CODE.findall(text)
    for code in codes:
        if code[0] in "45":
            return str(code)
    return None


# An envelope listed as a summary ("RCPT TO: user@host", Apache James's
# "Message details:"): the field, a space and a bare address. A session
# transcript writes the command itself ("RCPT TO:<user@host>").
_ENVELOPE_SUMMARY = re.compile(r"\b(?:RCPT TO|MAIL FROM): (?=[^<\s]+@)")


def find_command(text: str) -> str | None:
    """The SMTP command a quoted reply answered: the latest-in-session
    command named in ``text`` in capitals (``RCPT TO``, ``MAIL FROM``,
    ``DATA``…), not a part of a longer word (``DATABASE``), nor an
    envelope summary."""
    if ": " in text:
        text = _ENVELOPE_SUMMARY.sub("", text)
    found: str | None = None
    for needle, name in _COMMANDS:
        start = 0
        while True:
            position = text.find(needle, start)
            if position < 0:
                break
            start = position + 1
            if " " not in needle and not _stands_alone(text, position, len(needle)):
                continue
            if found is None or _SESSION_ORDER[name] >= _SESSION_ORDER[found]:
                found = name
            break
    return found


def _stands_alone(text: str, position: int, length: int) -> bool:
    before = text[position - 1] if position > 0 else " "
    after = text[position + length] if position + length < len(text) else " "
    return not (before.isalnum() or before in "@_" or after.isalnum() or after in "@_")


def status_class_matches(status: str | None, reply: str | None) -> bool:
    return not status or not reply or status[0] == reply[0]
