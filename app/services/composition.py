"""Message composition: one standards-clean ``multipart/alternative`` message
per (mass email, contact), built fast.

Everything that is the same for every recipient of a mass email (From,
Reply-To, List-Id, Feedback-ID, Precedence, MIME-Version, the MIME boundary
and part headers) is encoded once by ``build_skeleton``;
``MessageSkeleton.compose`` only encodes what differs (To, Subject, Date,
Message-ID, List-Unsubscribe, the queue item header, the two bodies) and
joins bytes. No ``EmailMessage`` per recipient: its header re-parsing and
re-folding is the measured bottleneck (docs/messages.md, BASELINES).

Rules:
- CRLF line endings throughout (RFC 5322 §2.1); header lines within 78
  characters where folding allows, never over 998 (§2.1.1).
- Header safety (``composition_headers``): CR, LF, NUL or any control in
  free text (subject, names, List-Id description) is folded to a space or
  dropped, never passed through; in an address, URL or domain it raises
  ``HeaderValueError`` naming the header.
- Bodies: text/plain first, then text/html (RFC 2046 §5.1.4: the last part
  is the preferred one), both UTF-8 quoted-printable (RFC 2045 §6.7): lines
  of at most 76 characters, "=" and trailing whitespace encoded, line breaks
  canonical CRLF (RFC 2046 §4.1.1: a lone CR or LF in the text is a line
  break). "From " at the start of a line is written "=46rom " so that an
  mbox-style ">From" rewrite on the way cannot break the DKIM body hash.
- List-Unsubscribe (RFC 2369) carries the HTTPS URL and, when given, the
  mailto URL; List-Unsubscribe-Post (RFC 8058) is added only with an HTTPS
  URL, which §3 requires for one-click (a plain-HTTP development site gets
  List-Unsubscribe alone).
- ``Message-ID: <q<queue item>.<16 random hex>@<sending domain>>`` (RFC 5322
  §3.6.4); ``X-Sluice-Queue-Item`` carries the queue item id for bounces.
- Send Test: subject prefix ``[TEST] `` and ``X-Sluice-Test: yes``.
"""

from __future__ import annotations

import binascii
import functools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Protocol

from app.services.composition_headers import (
    HeaderValueError,
    address_header,
    check_structured,
    clean_header_text,
    header_domain,
    list_id_header,
    token_header,
    unstructured,
)
from app.services.dkim_keys import DkimKey, DkimSigner, load_dkim_key

__all__ = [
    "DkimKey",
    "DkimSigner",
    "HeaderValueError",
    "MessageSkeleton",
    "RecipientHeaders",
    "RenderedParts",
    "SenderHeaders",
    "build_skeleton",
    "clean_header_text",
    "encode_body",
    "load_dkim_key",
]

TEST_SUBJECT_PREFIX = "[TEST] "
_ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
_TEST_HEADER = b"X-Sluice-Test: yes\r\n"
_FROM_LINE = re.compile(rb"^From (.*)$", re.MULTILINE)
_LINE_BREAK = re.compile(r"\r\n?")
_URL_SCHEMES = ("https://", "http://")


@dataclass(frozen=True)
class SenderHeaders:
    """What is the same for every recipient of a mass email."""

    from_name: str
    from_address: str
    reply_to: str  # empty: no Reply-To header
    list_id: str  # e.g. "Spring newsletter <12.lists.example.com>"
    feedback_id: str  # e.g. "12:7:newsletter:sluice"
    message_id_domain: str  # the From address's domain


@dataclass(frozen=True)
class RecipientHeaders:
    """What differs per recipient."""

    to_name: str
    to_address: str
    queue_item_id: int
    list_unsubscribe_url: str
    list_unsubscribe_mailto: str  # empty: the HTTPS URL only
    date: datetime  # timezone-aware
    test: bool = False


class RenderedParts(Protocol):
    """A rendered message: ``rendering.RenderedMessage`` satisfies it."""

    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...


# Lines of quoted-printable kept, encoded, for the next message: most lines
# of a mass email's parts are the same for every recipient (see encode_body).
QP_CACHE_LINES = 4096


def encode_body(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line breaks (RFC 2045 §6.7).

    ``binascii.b2a_qp`` keeps lines within 76 characters with soft breaks and
    encodes "=", trailing whitespace and a lone "." on a line. Characters
    that cannot be encoded (lone surrogates) become "?".

    Each line is encoded on its own (quoted-printable's rules are per line)
    and remembered: a mass email's static lines are then encoded once, not
    for every recipient (``b2a_qp`` costs ~10 ns a byte). Only the lines
    holding a recipient's own links or name are encoded again.
    """
    return _encode_part(text)[0]


def _encode_part(text: str) -> tuple[bytes, bool]:
    """``encode_body`` and whether a line of it starts with "." (SMTP must
    then double that dot, RFC 5321 §4.5.2: said here, where it is known
    line by line, so the transport need not scan the whole message)."""
    lines = [_encode_line(line) for line in _LINE_BREAK.sub("\n", text).split("\n")]
    return b"\r\n".join(line for line, _ in lines), any(dot for _, dot in lines)


@functools.lru_cache(maxsize=QP_CACHE_LINES)
def _encode_line(line: str) -> tuple[bytes, bool]:
    """One line (no line break in it) as quoted-printable, its soft breaks
    CRLF, and whether one of its output lines starts with "."."""
    encoded = binascii.b2a_qp(
        line.encode("utf-8", "replace"), quotetabs=False, istext=True, header=False
    )
    if encoded.startswith(b"From ") or b"\nFrom " in encoded:
        encoded = _FROM_LINE.sub(_escape_from_line, encoded)
    return encoded.replace(b"\n", b"\r\n"), encoded.startswith(b".") or b"\n." in encoded


def _escape_from_line(match: re.Match[bytes]) -> bytes:
    """``From `` at a line start becomes ``=46rom ``; when that pushes the
    line past 76 characters, a soft break follows ``=46rom`` instead."""
    rest = match.group(1)
    if len(rest) + 7 <= 76:
        return b"=46rom " + rest
    return b"=46rom=\n " + rest


def _list_unsubscribe(url: str, mailto: str) -> bytes:
    """RFC 2369 List-Unsubscribe, with RFC 8058 List-Unsubscribe-Post when
    the URL is HTTPS."""
    check_structured("List-Unsubscribe", url)
    if not url.isascii() or not url.startswith(_URL_SCHEMES) or "<" in url or ">" in url:
        raise HeaderValueError(f"List-Unsubscribe: {url!r} is not an ASCII HTTP(S) URL")
    parts = [f"<{url}>"]
    if mailto:
        check_structured("List-Unsubscribe", mailto)
        if not mailto.isascii() or not mailto.startswith("mailto:") or ">" in mailto:
            raise HeaderValueError(f"List-Unsubscribe: {mailto!r} is not an ASCII mailto URL")
        parts.append(f"<{mailto}>")
    line = "List-Unsubscribe: " + ",\r\n ".join(parts) + "\r\n"
    if any(len(piece) > 998 for piece in line.split("\r\n")):
        raise HeaderValueError("List-Unsubscribe: a URL is too long for a header line")
    one_click = _ONE_CLICK if url.startswith("https://") else b""
    return line.encode("ascii") + one_click


def _date(value: datetime) -> bytes:
    if value.tzinfo is None or value.utcoffset() is None:
        raise HeaderValueError("Date: the datetime must be timezone-aware")
    return b"Date: " + format_datetime(value).encode("ascii") + b"\r\n"


def _queue_item_id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HeaderValueError(f"X-Sluice-Queue-Item: {value!r} is not a queue item id")
    return value


@dataclass(frozen=True)
class MessageSkeleton:
    """The per-mass-email bytes; ``compose`` fills in one recipient."""

    head: bytes  # From … MIME-Version, complete header lines
    content_type: bytes  # the multipart header line, the blank line and the text part's headers
    between_parts: bytes  # the CRLF, the boundary and the HTML part's headers
    closing: bytes  # the CRLF and the closing boundary
    message_id_domain: str

    def compose(self, rendered: RenderedParts, recipient: RecipientHeaders) -> bytes:
        """The complete message for one recipient, CRLF line endings."""
        return self.compose_for_smtp(rendered, recipient)[0]

    def compose_for_smtp(
        self, rendered: RenderedParts, recipient: RecipientHeaders
    ) -> tuple[bytes, bool]:
        """``compose``, and whether a line of the message starts with "."
        (only a body line can: header lines start with a name or, folded,
        with white space; boundary lines with "--")."""
        subject = rendered.subject
        if recipient.test:
            subject = TEST_SUBJECT_PREFIX + subject
        item = _queue_item_id(recipient.queue_item_id)
        message_id = f"Message-ID: <q{item}.{secrets.token_hex(8)}@{self.message_id_domain}>\r\n"
        text, text_dots = _encode_part(rendered.text)
        html, html_dots = _encode_part(rendered.html)
        data = b"".join(
            (
                self.head,
                address_header("To", recipient.to_name, recipient.to_address),
                unstructured("Subject", clean_header_text(subject)),
                _date(recipient.date),
                message_id.encode("ascii"),
                _list_unsubscribe(
                    recipient.list_unsubscribe_url, recipient.list_unsubscribe_mailto
                ),
                b"X-Sluice-Queue-Item: %d\r\n" % item,
                _TEST_HEADER if recipient.test else b"",
                self.content_type,
                text,
                self.between_parts,
                html,
                self.closing,
            )
        )
        return data, text_dots or html_dots


def new_boundary() -> str:
    """A random MIME boundary that cannot occur in the parts.

    The classic trick: it starts with "=_". In quoted-printable output "="
    is always followed by two hex digits or a line break, never by "_", so
    no line of a QP-encoded part can begin with "--=_…"; the part headers
    are ours and hold no "=_" either. The 96 random bits make a clash with
    anything else (a forwarded copy, a preamble) negligible.
    """
    return f"=_sluice_{secrets.token_hex(12)}"


def _part_headers(subtype: str) -> bytes:
    return (
        f"Content-Type: text/{subtype}; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")


def build_skeleton(sender: SenderHeaders) -> MessageSkeleton:
    """Encode, once per mass email, the headers and MIME structure that are
    the same for every recipient. Raises ``HeaderValueError`` for a bad
    sender address, Reply-To, List-Id, Feedback-ID or Message-ID domain."""
    head = [address_header("From", sender.from_name, sender.from_address)]
    if sender.reply_to:
        head.append(address_header("Reply-To", "", sender.reply_to))
    head += [
        list_id_header(sender.list_id),  # RFC 2919
        token_header("Feedback-ID", sender.feedback_id),
        b"Precedence: bulk\r\n",
        b"MIME-Version: 1.0\r\n",  # RFC 2045 §4
    ]
    # The boundary holds "=", a tspecial: the parameter must be quoted (RFC 2045 §5.1).
    delimiter = b"--" + new_boundary().encode("ascii")
    content_type = b"".join(
        (b'Content-Type: multipart/alternative;\r\n boundary="', delimiter[2:], b'"\r\n\r\n')
    )
    return MessageSkeleton(
        head=b"".join(head),
        content_type=content_type + delimiter + b"\r\n" + _part_headers("plain"),
        between_parts=b"\r\n" + delimiter + b"\r\n" + _part_headers("html"),
        closing=b"\r\n" + delimiter + b"--\r\n",
        message_id_domain=header_domain("Message-ID", sender.message_id_domain),
    )
