"""A shallow, forgiving MIME reader for returned messages.

A bounce needs little of its MIME tree: the report parts written by the
mail system (text, ``message/delivery-status``, ``message/feedback-report``)
and the *headers* of the returned message. Neither the returned message's
body nor its attachments matter, so this reader never decodes them.

Why not a full parser (measured on the bounce corpus, one core):
``email.message_from_bytes(policy=compat32)`` with every payload decoded
reads about 1,000 messages/s, flanker's ``mime.create.from_string`` about the
same and raises ``DecodingError`` on 13 of the 629 corpus messages. The
classification target is 2,000 messages/s, and malformed input must never
raise, so this module splits parts itself and leaves the rest to the
standard library's primitives (RFC 2047 words via ``email.header``,
``binascii`` for base64 and quoted-printable).

Hostile input is bounded: only the first ``MAX_BYTES`` of a message are
read, multiparts nest at most ``MAX_DEPTH`` levels, at most ``MAX_PARTS``
parts and ``MAX_HEADER_BYTES`` of any header block are looked at. Each limit
that cuts something adds a note to ``problems``.
"""

from __future__ import annotations

import binascii
import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.header import decode_header

# A bounce's report is at the top of the message; 4 MiB holds any real
# report with its returned headers and keeps a hostile message cheap.
MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 12
MAX_PARTS = 64
MAX_HEADER_BYTES = 256 * 1024
MAX_DECODED_TEXT = 512 * 1024

_HEADER_LINE = re.compile(r"^([!-9;-~]+)[ \t]*:[ \t]*(.*)$")
_PARAM = re.compile(r';\s*([!#-\'*+\-.0-9A-Z^_`a-z|~]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;\s]*)')


class Headers:
    """A header block: names case-insensitive, values unfolded, in order."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (lower case), or None."""
        for key, value in self._fields:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._fields if key == name]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


@dataclass
class Part:
    """One leaf of the MIME tree (multiparts are opened, never kept)."""

    headers: Headers
    content_type: str
    params: dict[str, str]
    body: bytes
    depth: int


@dataclass
class Mail:
    """The parts of a message a bounce reader looks at."""

    headers: Headers
    body: bytes
    parts: list[Part]
    problems: list[str] = field(default_factory=list)


def normalise_newlines(raw: bytes) -> bytes:
    """CRLF and bare CR (old Mac mailers) become LF: one line end to handle."""
    if b"\r" not in raw:
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def split_head_body(raw: bytes) -> tuple[bytes, bytes]:
    """Header block and body, split at the first empty line (RFC 5322 §2.1).

    A message whose first line is not a header has no header block."""
    if raw.startswith(b"\n"):
        return b"", raw[1:]
    position = raw.find(b"\n\n")
    if position < 0:
        return raw, b""
    return raw[: position + 1], raw[position + 2 :]


def bytes_to_text(data: bytes, charset: str | None = None) -> str:
    """Decode with the declared charset, else UTF-8, else Latin-1 (which
    cannot fail): an unknown or wrong charset never loses the text."""
    if charset:
        name = charset.strip().strip('"').lower()
        try:
            codecs.lookup(name)
        except LookupError:
            name = ""
        if name:
            try:
                return data.decode(name)
            except (UnicodeDecodeError, ValueError):
                pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_headers(block: bytes, problems: list[str] | None = None) -> Headers:
    """Unfold a header block (RFC 5322 §2.2.3) into (lower-case name, value).

    Lines that are neither a field nor a continuation are skipped, as a
    mail reader would."""
    if len(block) > MAX_HEADER_BYTES:
        block = block[:MAX_HEADER_BYTES]
        if problems is not None:
            problems.append(f"header block longer than {MAX_HEADER_BYTES} bytes: cut")
    text = bytes_to_text(block)
    fields: list[tuple[str, str]] = []
    for line in text.split("\n"):
        if not line:
            continue
        if line[0] in " \t":
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {line.strip()}" if value else line.strip())
            continue
        match = _HEADER_LINE.match(line)
        if match:
            fields.append((match.group(1).lower(), match.group(2).strip()))
    return Headers(fields)


def looks_like_headers(block: bytes) -> bool:
    """True when the block starts with a header field (used for returned
    messages pasted inline after a marker line)."""
    first = block.split(b"\n", 1)[0]
    return bool(_HEADER_LINE.match(first.decode("latin-1")))


def content_type(headers: Headers) -> tuple[str, dict[str, str]]:
    """The media type (lower case) and its parameters; text/plain by default
    (RFC 2045 §5.2)."""
    value = headers.get("content-type")
    if not value:
        return "text/plain", {}
    media = value.split(";", 1)[0].strip().lower() or "text/plain"
    params: dict[str, str] = {}
    for name, raw_value in _PARAM.findall(value):
        text = raw_value
        if text.startswith('"'):
            text = text[1:-1] if text.endswith('"') and len(text) > 1 else text[1:]
            text = text.replace('\\"', '"').replace("\\\\", "\\")
        params.setdefault(name.lower(), text)
    return media, params


def decode_transfer(body: bytes, encoding: str | None) -> bytes:
    """Undo Content-Transfer-Encoding; broken base64 keeps what decodes."""
    name = (encoding or "").strip().lower()
    if name == "base64":
        return _decode_base64(body)
    if name == "quoted-printable":
        try:
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return body
    return body


def _decode_base64(body: bytes) -> bytes:
    compact = re.sub(rb"[^A-Za-z0-9+/=]", b"", body)
    compact = compact.split(b"=", 1)[0]
    compact = compact[: len(compact) - len(compact) % 4]
    try:
        return binascii.a2b_base64(compact + b"=" * (-len(compact) % 4))
    except (binascii.Error, ValueError):
        return b""


def part_text(part: Part) -> str:
    """A leaf part's body as text, transfer encoding and charset undone."""
    data = decode_transfer(part.body, part.headers.get("content-transfer-encoding"))
    if len(data) > MAX_DECODED_TEXT:
        data = data[:MAX_DECODED_TEXT]
    return bytes_to_text(data, part.params.get("charset"))


def decode_words(value: str | None) -> str:
    """RFC 2047 encoded words in a header value, decoded; never raises."""
    if not value:
        return ""
    if "=?" not in value:
        return value
    try:
        pieces = decode_header(value)
    except (ValueError, LookupError, AssertionError, binascii.Error):
        return value
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(bytes_to_text(chunk, charset))
    return "".join(out)


def read_mail(raw: bytes) -> Mail:
    """Split a raw message into its header block and leaf parts."""
    problems: list[str] = []
    if len(raw) > MAX_BYTES:
        raw = raw[:MAX_BYTES]
        problems.append(f"message longer than {MAX_BYTES} bytes: only the start was read")
    raw = normalise_newlines(raw)
    head, body = split_head_body(raw)
    headers = parse_headers(head, problems)
    if not len(headers):
        problems.append("no header block")
    parts: list[Part] = []
    _collect(headers, body, 0, parts, problems)
    return Mail(headers=headers, body=body, parts=parts, problems=problems)


def _collect(
    headers: Headers, body: bytes, depth: int, out: list[Part], problems: list[str]
) -> None:
    media, params = content_type(headers)
    if media.startswith("multipart/"):
        if depth >= MAX_DEPTH:
            problems.append(f"multipart nested deeper than {MAX_DEPTH} levels: inner parts skipped")
            return
        boundary = params.get("boundary")
        if not boundary:
            problems.append("multipart without a boundary: read as text")
            out.append(Part(headers, "text/plain", params, body, depth))
            return
        for chunk in _split_multipart(body, boundary, problems):
            if len(out) >= MAX_PARTS:
                problems.append(f"more than {MAX_PARTS} MIME parts: the rest skipped")
                return
            part_head, part_body = split_head_body(chunk)
            if part_head and not looks_like_headers(part_head):
                part_head, part_body = b"", chunk
            _collect(parse_headers(part_head, problems), part_body, depth + 1, out, problems)
        return
    out.append(Part(headers, media, params, body, depth))


def _split_multipart(body: bytes, boundary: str, problems: list[str]) -> Iterator[bytes]:
    """The body parts between boundary lines (RFC 2046 §5.1.1). A missing
    closing boundary (a truncated message) ends the last part at the end."""
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    pattern = re.compile(rb"^" + re.escape(delimiter) + rb"(--)?[ \t]*$", re.M)
    starts: list[tuple[int, int, bool]] = [
        (m.start(), m.end(), bool(m.group(1))) for m in pattern.finditer(body)
    ]
    if not starts:
        problems.append("multipart boundary never found: body read as text")
        yield b"Content-Type: text/plain\n\n" + body
        return
    closed = False
    for index, (_start, end, closing) in enumerate(starts):
        if closing:
            closed = True
            break
        stop = starts[index + 1][0] if index + 1 < len(starts) else len(body)
        chunk = body[end + 1 : stop]
        if chunk.endswith(b"\n"):
            chunk = chunk[:-1]
        yield chunk
    if not closed:
        problems.append("multipart without its closing boundary (truncated?)")
