"""The folder of mail caught by the development mail catcher: its format,
and the pure functions that store, list, read, prune and clear it.

Format (one folder, nothing else needed to read it):

- ``<id>.eml`` holds the message exactly as received after DATA;
  ``<id>.json`` beside it holds the envelope: ``received`` (ISO 8601 UTC,
  from the catcher's clock), ``mail_from``, ``rcpt_tos``, ``mail_options``
  (e.g. ``SMTPUTF8``, ``BODY=8BITMIME``) and ``size``.
- An id is ``<received as YYYYMMDDTHHMMSSffffff>Z-<sequence>-<random>``,
  e.g. ``20260302T090000000000Z-000001-9f86d081``: sorting ids sorts by
  arrival (the sequence orders messages of the same microsecond), so
  listing never has to open a file to order it. The random part keeps two
  catchers sharing a folder from overwriting each other.

Rules:

- **Atomic.** Each file is written to a hidden temporary name, then renamed;
  the sidecar first, the ``.eml`` last, so a message lists only once both
  are complete. A reader never sees half a message.
- **Bounded.** After each store, the oldest messages beyond ``max_messages``
  are deleted (the size of one message is bounded by the SMTP server).
- **Ids are validated strictly** against the pattern above before any path
  is built: ``../x``, an absolute path, a NUL or anything else is simply
  "not found".
- **Reading never raises** on what is in the folder: a missing or broken
  sidecar falls back to the time in the id and an unknown envelope; a
  message that does not parse still lists, its subject as written or
  ``(unreadable)``; undecodable bytes are shown replaced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path
from typing import Any, TypeGuard

log = logging.getLogger(__name__)

MESSAGE_SUFFIX = ".eml"
ENVELOPE_SUFFIX = ".json"
TEMPORARY_PREFIX = ".tmp-"
_ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{12}Z-[0-9]{6}-[0-9a-f]{8}", re.ASCII)
_STAMP_FORMAT = "%Y%m%dT%H%M%S%f"
# The listing parses only this much of each message: the header block of any
# real message fits, and a 10 MB body is not read to show its subject.
HEADER_READ_BYTES = 64 * 1024
DEFAULT_PER_PAGE = 50
UNREADABLE = "(unreadable)"
NO_SUBJECT = "(no subject)"


@dataclass(frozen=True)
class Envelope:
    """What the SMTP conversation said, as opposed to the message's headers."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaughtSummary:
    id: str
    received: datetime
    envelope: Envelope | None  # None: the sidecar is missing or broken
    subject: str
    size: int


@dataclass(frozen=True)
class CaughtPage:
    messages: list[CaughtSummary]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


@dataclass(frozen=True)
class CaughtMessage:
    summary: CaughtSummary
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    raw: bytes


def new_message_id(received: datetime, sequence: int) -> str:
    stamp = received.astimezone(UTC).strftime(_STAMP_FORMAT)
    return f"{stamp}Z-{sequence % 1_000_000:06d}-{secrets.token_hex(4)}"


def is_message_id(candidate: str) -> bool:
    return _ID_PATTERN.fullmatch(candidate) is not None


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}{path.suffix}")
    try:
        temporary.write_bytes(content)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def store_message(
    directory: Path,
    message_id: str,
    content: bytes,
    envelope: Envelope,
    received: datetime,
) -> None:
    """Store one message and its envelope (sidecar first, message last)."""
    directory.mkdir(parents=True, exist_ok=True)
    sidecar = {
        "received": received.astimezone(UTC).isoformat(),
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "mail_options": list(envelope.mail_options),
        "size": len(content),
    }
    encoded = json.dumps(sidecar, ensure_ascii=False, indent=1).encode("utf-8")
    _write_atomically(directory / f"{message_id}{ENVELOPE_SUFFIX}", encoded)
    _write_atomically(directory / f"{message_id}{MESSAGE_SUFFIX}", content)


def message_ids(directory: Path) -> list[str]:
    """Every complete message's id, newest first."""
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except FileNotFoundError:
        return []
    ids = [
        name.removesuffix(MESSAGE_SUFFIX)
        for name in names
        if name.endswith(MESSAGE_SUFFIX) and is_message_id(name.removesuffix(MESSAGE_SUFFIX))
    ]
    return sorted(ids, reverse=True)


def _delete(directory: Path, message_id: str) -> None:
    # The message first: once it is gone the id no longer lists.
    for suffix in (MESSAGE_SUFFIX, ENVELOPE_SUFFIX):
        (directory / f"{message_id}{suffix}").unlink(missing_ok=True)


def prune(directory: Path, max_messages: int) -> int:
    """Delete the oldest messages beyond ``max_messages``; how many went."""
    excess = message_ids(directory)[max_messages:]
    for message_id in excess:
        _delete(directory, message_id)
    return len(excess)


def clear_all(directory: Path) -> int:
    """Delete every caught message (and any leftover temporary or orphaned
    sidecar file); how many messages went."""
    ids = message_ids(directory)
    for message_id in ids:
        _delete(directory, message_id)
    try:
        leftovers = [entry.name for entry in os.scandir(directory)]
    except FileNotFoundError:
        return len(ids)
    for name in leftovers:
        stem = name.removesuffix(ENVELOPE_SUFFIX)
        if name.startswith(TEMPORARY_PREFIX) or (name != stem and is_message_id(stem)):
            (directory / name).unlink(missing_ok=True)
    return len(ids)


def list_messages(directory: Path, page: int = 1, per_page: int = DEFAULT_PER_PAGE) -> CaughtPage:
    """One page of caught messages, newest first. A page past the end is
    empty (the caller shows "no messages"), never an error."""
    if page < 1 or per_page < 1:
        raise ValueError("page and per_page must be at least 1")
    ids = message_ids(directory)
    start = (page - 1) * per_page
    summaries = [
        summary
        for message_id in ids[start : start + per_page]
        if (summary := _summary(directory, message_id)) is not None
    ]
    return CaughtPage(summaries, page, per_page, len(ids))


def read_message(directory: Path, message_id: str) -> CaughtMessage | None:
    """One caught message in full, or None when the id is malformed or
    names no message."""
    if not is_message_id(message_id):
        return None
    raw = _read_bytes(directory / f"{message_id}{MESSAGE_SUFFIX}")
    if raw is None:
        return None
    parsed = _parse(raw)
    summary = _summary_of(directory, message_id, parsed, len(raw))
    if parsed is None:
        return CaughtMessage(summary, [], _clean(raw.decode("utf-8", "replace")), None, raw)
    return CaughtMessage(
        summary,
        _headers(parsed),
        _body_part(parsed, "plain"),
        _body_part(parsed, "html"),
        raw,
    )


def _summary(directory: Path, message_id: str) -> CaughtSummary | None:
    path = directory / f"{message_id}{MESSAGE_SUFFIX}"
    try:
        with path.open("rb") as handle:
            head = handle.read(HEADER_READ_BYTES)
            size = os.fstat(handle.fileno()).st_size
    except FileNotFoundError:
        return None  # cleared or pruned since the folder was listed
    except OSError as error:
        log.warning("caught message %s cannot be read: %s", message_id, error)
        head, size = b"", 0
    return _summary_of(directory, message_id, _parse_headers(head), size)


def _summary_of(
    directory: Path, message_id: str, parsed: Message | None, size: int
) -> CaughtSummary:
    sidecar = _sidecar(directory, message_id)
    return CaughtSummary(
        id=message_id,
        received=_received(sidecar, message_id),
        envelope=_envelope(sidecar),
        subject=_subject(parsed),
        size=size,
    )


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _sidecar(directory: Path, message_id: str) -> dict[str, Any] | None:
    content = _read_bytes(directory / f"{message_id}{ENVELOPE_SUFFIX}")
    if content is None:
        return None
    try:
        loaded = json.loads(content)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _envelope(sidecar: dict[str, Any] | None) -> Envelope | None:
    if sidecar is None:
        return None
    mail_from = sidecar.get("mail_from")
    rcpt_tos = sidecar.get("rcpt_tos")
    options = sidecar.get("mail_options", [])
    if not isinstance(mail_from, str) or not _strings(rcpt_tos) or not _strings(options):
        return None
    return Envelope(mail_from, tuple(rcpt_tos), tuple(options))


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _received(sidecar: dict[str, Any] | None, message_id: str) -> datetime:
    """The sidecar's time, else the one in the id (they are the same when
    the catcher wrote both)."""
    try:
        received = datetime.fromisoformat(str((sidecar or {})["received"]))
        if received.tzinfo is not None:
            return received.astimezone(UTC)
    except (KeyError, ValueError):
        pass
    return datetime.strptime(message_id[:21], _STAMP_FORMAT).replace(tzinfo=UTC)


def _clean(text: str) -> str:
    """Text safe to encode: raw 8-bit bytes the parser kept as surrogate
    escapes are read as UTF-8, anything undecodable replaced."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# The stdlib parser is lenient, but header access under ``policy.default``
# runs a full RFC 5322 parse whose failure modes are not all documented;
# a malformed message must show, not raise, so these catch ``Exception``.


def _parse_headers(head: bytes) -> Message | None:
    try:
        return BytesHeaderParser(policy=policy.default).parsebytes(head)
    except Exception:
        return None


def _parse(raw: bytes) -> EmailMessage | None:
    try:
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception:
        return None
    return parsed if isinstance(parsed, EmailMessage) else None


def _subject(parsed: Message | None) -> str:
    if parsed is None:
        return UNREADABLE
    try:
        subject = parsed["Subject"]
    except Exception:
        return _raw_header(parsed, "Subject")
    if subject is None:
        return NO_SUBJECT
    return _clean(str(subject))


def _raw_header(parsed: Message, name: str) -> str:
    """A header as written, when decoding it failed."""
    for key, value in parsed.raw_items() if isinstance(parsed, EmailMessage) else []:
        if key.lower() == name.lower():
            return _clean(str(value))
    return UNREADABLE


def _headers(parsed: EmailMessage) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for name, raw_value in parsed.raw_items():
        try:
            value = str(parsed.policy.header_fetch_parse(name, raw_value))
        except Exception:
            value = str(raw_value)
        headers.append((_clean(name), _clean(value)))
    return headers


def _body_part(parsed: EmailMessage, subtype: str) -> str | None:
    try:
        part = parsed.get_body(preferencelist=(subtype,))
    except Exception:
        return None
    if part is None:
        return None
    try:
        content = part.get_content()
    except Exception:
        # An unknown charset or a broken transfer encoding: show the bytes.
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return None
    # SMTP's CRLF line ends, shown as plain lines.
    return _clean(content).replace("\r\n", "\n")
