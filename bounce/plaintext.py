"""Bounces written for people: recipients and errors in plain text.

Exim, qmail, Sendmail transcripts, Postfix without DSN, Gmail, Yahoo,
Exchange 2003, DragonFly, Zoho and many appliances write no RFC 3464 part;
they print the failed address and the remote server's reply in prose. The
layouts differ, but they share a few shapes (Sisimai's "lhost" modules list
them one by one):

* a line that *starts* with the failed address — alone (``  user@host``,
  Exim, Gmail), with a colon (``<user@host>:``, qmail, Yahoo, Postfix), with
  Sendmail's ``user@host... reason``, or followed by the reason (Exchange,
  Zoho);
* otherwise the address after a word that names it as the recipient
  (``delivering your mail to <user@host>``, ``Unknown user: user@host``);
* the remote server's reply, quoted with its reply code (``550 5.1.1 ...``,
  ``said: 550 ...``) in the lines after the address, or anywhere in the
  report (Gmail prints it under "The error that the other server returned").

The report ends where the returned message starts: a separator line such as
``------ This is a copy of the message`` or ``--- Below this line is a copy
of the message.``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bounce import addresses, smtp

# Lines that introduce the returned message (or its headers) in a text
# bounce: Exim, qmail, Sendmail, Gmail, Postfix, Lotus Notes, IMail, ...
_RETURNED_MARKER = re.compile(
    r"^\s*(?:[-=*_#]+\s*)?(?:"
    r"this is a copy of (?:the|your) message"
    r"|.{0,40}below this line is a copy of the message"
    r"|(?:-+ )?original message(?: follows| header| headers| text)?\b"
    r"|unsent message (?:below|follows)"
    r"|(?:the )?returned message"
    r"|message headers follow"
    r"|(?:the )?headers? of (?:the|your) original message"
    r"|included is a copy of the message header"
    r"|original (?:mail|message) (?:is )?(?:attached|follows|below|header)"
    r"|your message reads \(in part\)"
    r"|(?:the )?text of your message"
    r"|here is a copy of the first part of the message"
    r"|this is a copy of the headers"
    r")",
    re.I,
)
_ADDRESS_START = re.compile(r"^\s*(?:rcpt to:\s*)?[<\"(\[]?\s*" + addresses.ADDRESS.pattern)
_AFTER_NAMING_WORD = re.compile(
    r"(?:\bto|\bfor|\brecipients?|\buser|\baddress(?:es)?|\bmailbox|\brcpt to|\bforward-path)"
    r"\s*(?:is|was|named)?\s*[:=]?\s*[<\"'(\[]?\s*$",
    re.I,
)
_SENDER_WORD = re.compile(
    r"(?:\bfrom|\bsender|return-path|reply-to|envelope-from|\bby|\bvia|\bcc)\s*[:=]?\s*[<\"'(]?\s*$",
    re.I,
)
_REPLY_LINE = re.compile(
    r"(?:^|said:?\s|returned:?\s|reply:?\s|response:?\s|error:?\s|<<<\s)\s*[245]\d\d[\s-]",
    re.I | re.M,
)
# Sendmail's transcript names each failed recipient as "554 <user@host>...".
_SENDMAIL_RECIPIENT = re.compile(r"^\s*[245]\d\d <[^<>\s]+@[^<>\s]+>\.\.\. ")
MAX_BLOCK_LINES = 24
MAX_REPORT_CHARS = 64 * 1024


@dataclass
class TextRecipient:
    address: str
    diagnostic: str
    strength: int  # 3: line starts with it, 2: named as recipient, 1: elsewhere


@dataclass
class TextReport:
    report: str  # the mail system's prose, returned message cut off
    returned: str | None  # what follows the marker, if any
    recipients: list[TextRecipient]
    reply_lines: list[str]


def cut_returned(text: str) -> tuple[str, str | None]:
    """The report and the returned message, split at the marker line."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if len(line) < 120 and _RETURNED_MARKER.match(line) and index > 0:
            return "\n".join(lines[:index]), "\n".join(lines[index + 1 :])
    return text, None


def reply_lines(report: str) -> list[str]:
    """Lines of the report that quote a remote server's reply."""
    found = []
    for line in report.split("\n"):
        stripped = line.strip()
        if stripped and (_REPLY_LINE.search(stripped) or _has_status_code(stripped)):
            found.append(stripped)
    return found


def _has_status_code(line: str) -> bool:
    return bool(smtp.ENHANCED_STATUS.search(line)) and not line.lower().startswith(
        ("status:", "x-", "received:")
    )


def read_report(
    text: str, senders: set[str], addressed_to: frozenset[str] = frozenset()
) -> TextReport:
    """Recipients and their error text from a bounce written as prose.

    ``senders`` (lower case) are the addresses of whoever sent the returned
    message and of the bounce's own envelope: never the failed recipient,
    unless the returned message was ``addressed_to`` them too."""
    report, returned = cut_returned(text[:MAX_REPORT_CHARS])
    lines = report.split("\n")
    candidates = _candidates(lines, senders) or [
        # A message sent to oneself: the sender is the failed recipient
        # when the returned message was addressed to them.
        candidate
        for candidate in _candidates(lines, set())
        if candidate[2] == 3 and candidate[1].lower() in addressed_to
    ]
    best = max((strength for _, _, strength in candidates), default=0)
    chosen: list[tuple[int, str, int]] = []
    seen: set[str] = set()
    for line_index, value, strength in candidates:
        if strength == best and value.lower() not in seen:
            seen.add(value.lower())
            chosen.append((line_index, value, strength))
    found_lines = reply_lines(report)
    recipients = []
    for position, (line_index, value, strength) in enumerate(chosen):
        stop = chosen[position + 1][0] if position + 1 < len(chosen) else len(lines)
        transcript = ""
        if _SENDMAIL_RECIPIENT.match(lines[line_index]):
            stop = _continuation_end(lines, line_index)
            transcript = _transcript_for(lines, value)
        block = _block(lines, line_index, stop)
        if transcript and transcript not in block:
            block = f"{transcript}\n{block}"
        recipients.append(TextRecipient(value, block, strength))
    return TextReport(report, returned, recipients, found_lines)


def _candidates(lines: list[str], senders: set[str]) -> list[tuple[int, str, int]]:
    found: list[tuple[int, str, int]] = []
    for index, line in enumerate(lines):
        if "@" not in line:
            continue
        lowered_line = line.lstrip().lower()
        if lowered_line.startswith(("from:", "sender:", "return-path:", "reply-to:", "received:")):
            continue
        for position, value in addresses.find_all(line):
            lowered = value.lower()
            if lowered in senders or addresses.is_system_address(value):
                continue
            before = line[:position]
            if _SENDER_WORD.search(before[-40:]):
                continue
            if "://" in before[-60:] and " " not in before[before.rfind("://") :]:
                continue  # part of a URL
            strength = 1
            starts_line = _ADDRESS_START.match(line) and not before.strip(' \t<"([').lower()
            if starts_line or _SENDMAIL_RECIPIENT.match(line):
                strength = 3
            elif _AFTER_NAMING_WORD.search(before[-60:]):
                strength = 2
            found.append((index, value, strength))
    return found


def _transcript_for(lines: list[str], address: str) -> str:
    """Sendmail's session transcript about ``address``: the command it sent
    (``>>> RCPT To:<user@host>``) and the replies (``<<< 550 ...``) that
    follow it, which say which command the server refused."""
    lowered = address.lower()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">>>") and lowered in stripped.lower():
            found = [stripped]
            for after in lines[index + 1 : index + 6]:
                if not after.strip().startswith("<<<"):
                    break
                found.append(after.strip())
            return "\n".join(found) if len(found) > 1 else ""
    return ""


def _continuation_end(lines: list[str], start: int) -> int:
    """Sendmail's transcript gives a recipient one line, continued only by
    indented lines."""
    end = start + 1
    while end < len(lines) and lines[end][:1] in (" ", "\t") and lines[end].strip():
        end += 1
    return end


def block_for(report: str, address: str) -> str:
    """The block of the first report line naming ``address`` (any role)."""
    lines = report.split("\n")
    lowered = address.lower()
    for index, line in enumerate(lines):
        if lowered in line.lower():
            return _block(lines, index, len(lines))
    return ""


def _block(lines: list[str], start: int, stop: int) -> str:
    """The anchor line and the lines after it up to the next recipient (at
    most ``MAX_BLOCK_LINES``)."""
    pieces = [lines[start].strip()]
    previous = lines[start - 1].strip() if start > 0 else ""
    if previous and "@" not in previous and not smtp.REPLY_CODE.match(previous):
        # Lotus Notes and Domino print the reason on the line above.
        pieces.insert(0, lines[start - 1].strip())
    for line in lines[start + 1 : min(stop, start + 1 + MAX_BLOCK_LINES)]:
        pieces.append(line.strip())
    text = "\n".join(pieces).strip()
    return re.sub(r"\n{3,}", "\n\n", text)
