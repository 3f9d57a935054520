"""Header encoding for composed messages: sanitising, address checks,
RFC 2047 encoded-words and RFC 5322 folding, written as ASCII text directly.

Rules:
- Free text (subject, display names, the List-Id description) never carries
  a line break into a header: runs of CR, LF, tab and the other line
  separators (VT, FF, FS/GS/RS, U+0085, U+2028, U+2029) become one space;
  NUL, the other C0 controls, DEL, C1 controls and lone surrogates are
  dropped; leading and trailing spaces are removed (``clean_header_text``).
- Structured values (addresses, URLs, domains, ids) are never repaired: a
  line break or control character, a space or a malformed value raises
  ``HeaderValueError`` naming the header. An address with a newline is not
  an address.
- Non-ASCII text is written as RFC 2047 encoded-words of at most 75
  characters, one per line, split between characters (never inside a UTF-8
  sequence). ASCII text is written as is, folded at spaces to lines of at
  most 78 characters (RFC 5322 §2.1.1); text that cannot be folded that way,
  or that contains "=?" (which a reader would take for an encoded-word), is
  encoded instead.
- Non-ASCII domains are written in IDNA (punycode) form. A non-ASCII local
  part needs SMTPUTF8 (RFC 6531), which Sluice does not speak yet: refused.
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache

import idna

# RFC 5322 §2.1.1: SHOULD be no more than 78 characters, MUST be no more than 998.
MAX_LINE = 78
MAX_HARD_LINE = 998
# RFC 2047 §2: an encoded-word is at most 75 characters long.
MAX_ENCODED_WORD = 75

_LINE_BREAKS = re.compile(r"[\r\n\t\v\f\x1c-\x1e\x85\u2028\u2029]+")
_DROPPED = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\ud800-\udfff]")
_UNSAFE_STRUCTURED = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")
# RFC 5322 §3.2.3 atext: a display name made of these words needs no quoting.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# Fold points of ASCII text: before a space that is followed by a non-space,
# so that no folded line is whitespace only (RFC 5322 §3.2.2).
_FOLD_POINT = re.compile(r"(?= [^ ])")
# RFC 2047 §5(3): the characters a "Q" encoded-word may carry unencoded in a phrase.
_Q_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_PREFIX = "=?utf-8?q?"
_B_PREFIX = "=?utf-8?b?"
_EW_OVERHEAD = len(_Q_PREFIX) + len("?=")


class HeaderValueError(ValueError):
    """A header value that cannot be made safe: refused, never injected.
    The message names the header."""


def clean_header_text(value: str) -> str:
    """Free text made safe for a header: line breaks and tabs folded to one
    space, other control characters dropped, outer spaces removed."""
    return _DROPPED.sub("", _LINE_BREAKS.sub(" ", value)).strip(" ")


def check_structured(header: str, value: str) -> str:
    """Refuse a structured value holding a space, line break or control."""
    if _UNSAFE_STRUCTURED.search(value):
        raise HeaderValueError(
            f"{header}: {value!r} contains a space, line break or control character"
        )
    return value


@lru_cache(maxsize=4096)
def header_domain(header: str, domain: str) -> str:
    """The domain as a header carries it: ASCII, IDNA-encoded when needed."""
    check_structured(header, domain)
    ascii_domain = domain
    if not domain.isascii():
        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as error:
            raise HeaderValueError(f"{header}: {domain!r} is not a valid domain: {error}") from None
    if not _DOMAIN.fullmatch(ascii_domain):
        raise HeaderValueError(f"{header}: {domain!r} is not a valid domain")
    return ascii_domain


def header_address(header: str, address: str) -> str:
    """The addr-spec as a header carries it, checked structurally: one "@",
    a dot-atom local part (no spaces, quotes, "<>", ","), a valid domain."""
    check_structured(header, address)
    local, at, domain = address.rpartition("@")
    if not at or "@" in local:
        raise HeaderValueError(f"{header}: {address!r} is not an address (one '@' expected)")
    if not local.isascii():
        raise HeaderValueError(
            f"{header}: {address!r} has a non-ASCII local part, which needs SMTPUTF8;"
            " Sluice does not support SMTPUTF8 yet"
        )
    if len(local) > 64 or not _DOT_ATOM.fullmatch(local):
        raise HeaderValueError(f"{header}: {address!r} is not an address (bad local part)")
    return f"{local}@{header_domain(header, domain)}"


def _q_char(char: str) -> str:
    if char in _Q_SAFE:
        return char
    if char == " ":
        return "_"  # RFC 2047 §4.2(2)
    return "".join(f"={byte:02X}" for byte in char.encode("utf-8"))


def _q_words(text: str, budgets: tuple[int, int]) -> list[str]:
    """Q encoded-word payloads, the first of at most ``budgets[0]``
    characters, the others of at most ``budgets[1]``; split between
    characters."""
    words: list[str] = []
    current = ""
    for char in text:
        encoded = _q_char(char)
        if current and len(current) + len(encoded) > budgets[bool(words)]:
            words.append(current)
            current = ""
        current += encoded
    words.append(current)
    return words


def _b_words(text: str, budgets: tuple[int, int]) -> list[str]:
    """B encoded-word payloads within ``budgets`` (as ``_q_words``), each
    the base64 of whole characters' UTF-8 bytes."""
    words: list[str] = []
    current = b""
    for char in text:
        encoded = char.encode("utf-8")
        if current and len(current) + len(encoded) > budgets[bool(words)] // 4 * 3:
            words.append(base64.b64encode(current).decode("ascii"))
            current = b""
        current += encoded
    words.append(base64.b64encode(current).decode("ascii"))
    return words


def encoded_words(text: str, first_line_used: int) -> list[str]:
    """RFC 2047 encoded-words for ``text``: "Q" when that is no longer than
    "B" (mostly-Latin text stays readable), else "B". The first word fits on
    a line already holding ``first_line_used`` characters; each later word
    goes on a continuation line of its own (" " + word, at most 75 + 1)."""
    raw = text.encode("utf-8")
    q_length = len(raw) + 2 * sum(1 for byte in raw if chr(byte) not in _Q_SAFE and byte != 32)
    later_budget = MAX_ENCODED_WORD - _EW_OVERHEAD
    budgets = (min(MAX_LINE - first_line_used - _EW_OVERHEAD, later_budget), later_budget)
    if q_length <= (len(raw) + 2) // 3 * 4:
        return [f"{_Q_PREFIX}{word}?=" for word in _q_words(text, budgets)]
    return [f"{_B_PREFIX}{word}?=" for word in _b_words(text, budgets)]


def fold_ascii(text: str, first_line_used: int) -> list[str] | None:
    """Lines of ASCII ``text`` folded at spaces, each within 78 characters
    (the first after ``first_line_used`` characters); None when a word is too
    long to fit, or the text would read as an encoded-word."""
    if "=?" in text:
        return None
    if first_line_used + len(text) <= MAX_LINE:
        return [text]
    lines: list[str] = []
    current = ""
    used = first_line_used
    for piece in _FOLD_POINT.split(text):
        if current and used + len(current) + len(piece) > MAX_LINE:
            lines.append(current)
            current, used = "", 0
        current += piece
    lines.append(current)
    too_long = len(lines[0]) + first_line_used > MAX_LINE or any(
        len(line) > MAX_LINE for line in lines[1:]
    )
    return None if too_long else lines


def unstructured(name: str, text: str) -> bytes:
    """A complete unstructured header line (Subject), CRLF-terminated: ASCII
    folded at spaces, otherwise RFC 2047 encoded-words (§5(1))."""
    used = len(name) + 2
    lines = fold_ascii(text, used) if text.isascii() else None
    if lines is None:
        lines = encoded_words(text, used)
        return (f"{name}: " + "\r\n ".join(lines) + "\r\n").encode("ascii")
    return (f"{name}: " + "\r\n".join(lines) + "\r\n").encode("ascii")


def phrase(text: str, first_line_used: int) -> list[str]:
    """A display name (RFC 5322 §3.2.5 phrase) as lines: bare atoms, a
    quoted-string, or RFC 2047 encoded-words (§5(3)) for non-ASCII text,
    text that reads as an encoded-word, or a name too long for one line."""
    if text.isascii() and "=?" not in text:
        if _ATOMS.fullmatch(text):
            quoted = text
        else:
            quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if first_line_used + len(quoted) <= MAX_LINE:
            return [quoted]
    return encoded_words(text, first_line_used)


def address_header(name: str, display_name: str, address: str) -> bytes:
    """A complete mailbox header line (From, To, Reply-To): the cleaned
    display name and the checked address, folded, CRLF-terminated."""
    addr_spec = header_address(name, address)
    display = clean_header_text(display_name)
    return _name_and_angle(name, display, addr_spec)


def _name_and_angle(name: str, display: str, angle_value: str) -> bytes:
    """``Name: phrase <value>``, or ``Name: value`` without a phrase for an
    address (``Name: <value>`` when ``angle_value`` must stay bracketed)."""
    if not display:
        line = f"{name}: {angle_value}\r\n"
        return line.encode("ascii")
    used = len(name) + 2
    lines = phrase(display, used)
    last = f"<{angle_value}>"
    last_used = (used if len(lines) == 1 else 1) + len(lines[-1])
    separator = " " if last_used + 1 + len(last) <= MAX_LINE else "\r\n "
    text = f"{name}: " + "\r\n ".join(lines) + separator + last + "\r\n"
    _check_hard_limit(name, text)
    return text.encode("ascii")


def list_id_header(list_id: str) -> bytes:
    """RFC 2919 List-Id: ``[description] <list-label.domain>``; the
    description is a phrase, the id a dot-atom checked structurally."""
    match = re.fullmatch(r"(.*)<([^<>]*)>\s*", list_id, re.DOTALL)
    description, identifier = match.groups() if match else ("", list_id)
    check_structured("List-Id", identifier)
    if not _DOT_ATOM.fullmatch(identifier) or "." not in identifier:
        raise HeaderValueError(f"List-Id: {identifier!r} is not a list id (label.domain)")
    display = clean_header_text(description)
    if not display:
        return f"List-Id: <{identifier}>\r\n".encode("ascii")
    return _name_and_angle("List-Id", display, identifier)


def token_header(name: str, value: str) -> bytes:
    """A header whose value is one printable ASCII token (Feedback-ID)."""
    check_structured(name, value)
    if not value or not value.isascii():
        raise HeaderValueError(f"{name}: {value!r} must be printable ASCII, not empty")
    line = f"{name}: {value}\r\n"
    _check_hard_limit(name, line)
    return line.encode("ascii")


def _check_hard_limit(name: str, text: str) -> None:
    """RFC 5322 §2.1.1: no line longer than 998 characters, ever."""
    if any(len(line) > MAX_HARD_LINE for line in text.split("\r\n")):
        raise HeaderValueError(f"{name}: the value is too long for a header line")
