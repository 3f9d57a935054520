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


def first_status(text: str, prefer_class: str | None = None) -> str | None:
    """The first enhanced status code (of ``prefer_class`` if any has it)."""
    codes = status_codes(text)
    if prefer_class:
        for code in codes:
            if code[0] == prefer_class:
                return code
    return codes[0] if codes else None


def reply_code(text: str) -> str | None:
    """The first SMTP reply code quoted in ``text`` (4xx/5xx preferred)."""
    codes = REPLY_CODE.findall(text)
    for code in codes:
        if code[0] in "45":
            return str(code)
    return None


def find_command(text: str) -> str | None:
    """The SMTP command a quoted reply answered: the latest-in-session
    command named in ``text`` in capitals (``RCPT TO``, ``MAIL FROM``,
    ``DATA``…), not a part of a longer word (``DATABASE``)."""
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
