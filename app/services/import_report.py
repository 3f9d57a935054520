"""CSV imports started in the browser: the upload's encoding, the import
itself (``contact_import.import_contacts``, the same rules as the command
line), and the report kept for the page and the rejected-rows download.

Rules:

- **Size:** ``run_import`` imports an upload while the request waits, so it
  is at most the in-request limit (``import_inline_max_kilobytes``, 5 MiB
  by default: some 50,000 rows, a few seconds); bigger ones are imported in
  the background (``app.services.background_import``), with the same rules
  and the same report.
- **Encoding:** "detect" reads the bytes: a UTF-16 byte-order mark means
  UTF-16; bytes that are valid UTF-8 (with or without a BOM) mean UTF-8;
  anything else is taken as Windows-1252 (what Excel writes on Western
  systems), or Latin-1 when not even that decodes. The person can also name
  the encoding. A row whose bytes do not decode is rejected with the byte
  and the column, as on the command line.
- **Report:** written with the batch it belongs to (``ProblemRecorder``),
  so a stopped import's report holds exactly the rows it counted. Every
  rejected row (its number, the field when the reason
  names one, the message, and its cells as read) and every warning (a typo
  suggestion, one of the company's own addresses) is stored in
  ``contact_import_problems`` with the import; the file's header and
  delimiter go on the import, so the rejected-rows download is the file the
  command line writes: ``sluice_row``, ``sluice_reason`` and the row's
  cells under the file's header, ready to be corrected and imported again.
  Text the database cannot hold (a NUL, bytes that did not decode) is
  stored as U+FFFD.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final, TextIO

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models.imports import ContactImport, ContactImportProblem, ImportProblemKind
from app.services.contact_csv import (
    REJECTED_FILE_COLUMNS,
    ContactCsvFile,
    CsvLayout,
    RejectedRow,
    RejectedRowsWriter,
    RowPosition,
    RowWarning,
)
from app.services.contact_import import (
    ImportSummary,
    check_import_options,
    continue_import,
    start_import,
)

UPLOAD_MAX_BYTES: Final = 5 * 1024 * 1024
DETECT: Final = "detect"
# (value, label) for the form; every value but DETECT is a Python codec name.
ENCODING_CHOICES: Final = (
    (DETECT, "Detect (UTF-8, UTF-16, else Windows-1252)"),
    ("utf-8-sig", "UTF-8"),
    ("cp1252", "Windows-1252 (older Excel on Western systems)"),
    ("latin-1", "Latin-1 (ISO 8859-1)"),
    ("utf-16", "UTF-16 (Excel's Unicode text)"),
    ("iso-8859-15", "Latin-9 (ISO 8859-15)"),
    ("cp1250", "Windows-1250 (Central European)"),
    ("cp1251", "Windows-1251 (Cyrillic)"),
    ("mac-roman", "Mac Roman"),
)
ENCODING_VALUES: Final = frozenset(value for value, _ in ENCODING_CHOICES)
PROBLEM_PAGE_MAX: Final = 500
_CLI_HINT = "re-run with --encoding"
_WEB_HINT = "import the file again choosing its encoding"
_COLUMN_IN_REASON = re.compile(r"\bcolumn (?:'((?:[^'\\]|\\.)*)'|(\d+))")
_BUILT_IN_FIELDS: Final = ("email", "first name", "last name", "company", "type")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UploadError(ValueError):
    """The upload cannot be imported; ``field`` names the form field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def detect_encoding(data: bytes) -> str:
    """The codec to read ``data`` with (see the module's rules)."""
    return detect_stream_encoding([data])


def detect_stream_encoding(chunks: Iterable[bytes], *, complete: bool = True) -> str:
    """The codec to read the bytes of ``chunks`` with, in one pass and
    without holding them (see the module's rules). ``complete=False``: the
    chunks are only the file's start, which may end inside a character."""
    candidates = {name: codecs.getincrementaldecoder(name)() for name in ("utf-8-sig", "cp1252")}
    first = True
    for chunk in chunks:
        if first and chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        first = first and not chunk
        for name, decoder in list(candidates.items()):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                del candidates[name]
        if not candidates:
            return "latin-1"
    for name, decoder in list(candidates.items()):
        try:
            decoder.decode(b"", final=complete)
        except UnicodeDecodeError:  # a UTF-8 sequence cut off at the end
            del candidates[name]
    return next(iter(candidates), "latin-1")


def encoding_label(encoding: str) -> str:
    return dict(ENCODING_CHOICES).get(encoding, encoding)


def web_message(text: str) -> str:
    """A service message worded for the browser (no command-line option)."""
    return text.replace(_CLI_HINT, _WEB_HINT)


def _storable(text: str) -> str:
    """``text`` as the database can store it: lone surrogates (bytes that
    did not decode) and NUL become U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def reason_field(reason: str, layout: CsvLayout) -> str:
    """The field a rejection reason is about: the built-in field or custom
    column it starts with, or the column it names; "" when it is about the
    whole row."""
    names = [*_BUILT_IN_FIELDS, *(name for _, name in layout.custom_columns)]
    for name in sorted(names, key=len, reverse=True):
        if reason.startswith(name) and reason[len(name) : len(name) + 2] in {": ", " '"}:
            return name
    match = _COLUMN_IN_REASON.search(reason)
    if match is None:
        return ""
    return match.group(1) if match.group(1) is not None else f"column {match.group(2)}"


def problem_message(problem: ContactImportProblem) -> str:
    """The message without the field it starts with (shown beside it)."""
    message = problem.message
    if problem.field and message.startswith(problem.field + ": "):
        return message[len(problem.field) + 2 :]
    return message


@dataclass
class ProblemRecorder:
    """An import's rejected rows and warnings, kept as they are met and
    written by ``flush`` just before the batch they belong to is committed
    (``continue_import``'s ``before_commit``)."""

    session: Session
    import_id: int
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[RowWarning] = field(default_factory=list)
    _layout_stored: bool = False

    def flush(self) -> None:
        if self.rejected and not self._layout_stored:
            layout = self.rejected[0].layout
            self.session.execute(
                update(ContactImport)
                .where(ContactImport.id == self.import_id)
                .values(
                    csv_header=[_storable(name) for name in layout.header],
                    csv_delimiter=layout.delimiter,
                ),
                execution_options={"synchronize_session": False},
            )
            self._layout_stored = True
        rows = [_rejected_row(self.import_id, rejected) for rejected in self.rejected]
        rows += [_warning_row(self.import_id, warning) for warning in self.warnings]
        if rows:
            self.session.execute(insert(ContactImportProblem), rows)
        self.rejected.clear()
        self.warnings.clear()


@dataclass(frozen=True)
class WebImport:
    summary: ImportSummary
    encoding: str


def run_import(
    session: Session,
    data: bytes,
    *,
    file_name: str,
    list_name: str,
    update: bool,
    default_type: str | None,
    encoding: str,
    clock: Clock,
    own_addresses: frozenset[str],
    max_bytes: int = UPLOAD_MAX_BYTES,
) -> WebImport:
    """Import the uploaded ``data`` while the request waits and store its
    report (committed with each batch).

    Raises ``UploadError`` for an upload over ``max_bytes``, empty, binary
    or with an unknown encoding, and ``ImportFileError`` or ``ContactError``
    for a file or list name that cannot be imported; nothing is imported
    then.
    """
    if len(data) > max_bytes:
        raise UploadError(
            "file",
            f"the file is {len(data):,} bytes; this page imports files up to "
            f"{max_bytes:,} bytes while it waits",
        )
    check_upload_start(data[:SNIFF_BYTES], len(data))
    if encoding not in ENCODING_VALUES:
        raise UploadError("encoding", "choose one of the encodings offered")
    chosen = detect_encoding(data) if encoding == DETECT else encoding
    list_name, default_type_name = check_import_options(list_name, default_type)
    csv_file = ContactCsvFile(io.BytesIO(data), chosen)
    record = start_import(
        session,
        clock,
        source_name=file_name,
        list_name=list_name,
        update=update,
        default_type=default_type_name,
    )
    record.encoding = chosen
    recorder = ProblemRecorder(session, record.id)
    summary = continue_import(
        session,
        record,
        csv_file,
        clock=clock,
        own_addresses=own_addresses,
        on_rejected=recorder.rejected.append,
        on_warning=recorder.warnings.append,
        before_commit=recorder.flush,
    )
    return WebImport(summary, chosen)


# Binary files a marketer may pick by mistake, by their first bytes.
_BINARY_SIGNATURES: Final = (
    (b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx): save it as CSV first"),
    (b"\xd0\xcf\x11\xe0", "an older Excel workbook (.xls): save it as CSV first"),
    (b"%PDF", "a PDF document, not a CSV file"),
    (b"\x1f\x8b", "a gzip archive: unpack it first"),
)
SNIFF_BYTES: Final = 64 * 1024


def check_upload_start(start: bytes, size: int) -> None:
    """Raise ``UploadError`` for an upload that is empty, or whose first
    bytes (``start``) show a binary file rather than text."""
    if size == 0 or not start:
        raise UploadError("file", "the file is empty: choose a CSV file with a header row")
    for signature, what in _BINARY_SIGNATURES:
        if start.startswith(signature):
            raise UploadError("file", f"this file is {what}")
    utf16 = start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if not utf16 and b"\x00" in start:
        raise UploadError(
            "file",
            "this file holds binary data (NUL bytes), not text: save it as CSV "
            "(UTF-8, or UTF-16 with its byte-order mark) and upload that",
        )


def _rejected_row(import_id: int, rejected: RejectedRow) -> dict[str, object]:
    return {
        "import_id": import_id,
        "kind": ImportProblemKind.REJECTED,
        "row": rejected.position.row,
        "position": str(rejected.position),
        "field": _storable(reason_field(rejected.reason, rejected.layout))[:200],
        "message": _storable(web_message(rejected.reason)),
        "email": "",
        "cells": [_storable(cell) for cell in rejected.cells],
    }


def _warning_row(import_id: int, warning: RowWarning) -> dict[str, object]:
    return {
        "import_id": import_id,
        "kind": ImportProblemKind.WARNING,
        "row": warning.position.row,
        "position": str(warning.position),
        "field": "email",
        "message": _storable(warning.message),
        "email": _storable(warning.email),
        "cells": [],
    }


# ---------------------------------------------------------------- reading it back


def import_by_id(session: Session, import_id: int) -> ContactImport:
    record = session.get(ContactImport, import_id)
    if record is None:
        raise LookupError(f"no import with id {import_id}")
    return record


def recent_imports(session: Session, limit: int = 20) -> list[ContactImport]:
    """The latest imports, newest first (browser and command line alike)."""
    return list(
        session.scalars(select(ContactImport).order_by(ContactImport.id.desc()).limit(limit))
    )


@dataclass(frozen=True)
class ProblemPage:
    problems: list[ContactImportProblem]
    next_after: int | None


def problems_page(
    session: Session,
    import_id: int,
    kind: ImportProblemKind,
    *,
    after: int | None = None,
    limit: int = 100,
) -> ProblemPage:
    """The import's problems of ``kind`` in file order, a keyset page."""
    if not 1 <= limit <= PROBLEM_PAGE_MAX:
        raise ValueError(f"page size: between 1 and {PROBLEM_PAGE_MAX}")
    query = select(ContactImportProblem).where(
        ContactImportProblem.import_id == import_id, ContactImportProblem.kind == kind
    )
    if after is not None:
        query = query.where(ContactImportProblem.id > after)
    rows = list(session.scalars(query.order_by(ContactImportProblem.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return ProblemPage(rows, rows[-1].id if more else None)


def _layout(record: ContactImport) -> CsvLayout:
    header = tuple(record.csv_header or ())
    passthrough = tuple(
        index for index, name in enumerate(header) if name.lower() not in REJECTED_FILE_COLUMNS
    )
    return CsvLayout(record.csv_delimiter or ",", header, {}, (), (), (), passthrough)


def _rejected_rows(session: Session, record: ContactImport) -> Iterable[RejectedRow]:
    layout = _layout(record)
    query = (
        select(ContactImportProblem.row, ContactImportProblem.message, ContactImportProblem.cells)
        .where(
            ContactImportProblem.import_id == record.id,
            ContactImportProblem.kind == ImportProblemKind.REJECTED,
        )
        .order_by(ContactImportProblem.id)
        .execution_options(yield_per=1000)
    )
    for row, message, cells in session.execute(query):
        yield RejectedRow(RowPosition(row, row, row), message, tuple(cells or ()), layout)


def rejected_rows_csv(
    session: Session, record: ContactImport, chunk_size: int = 64 * 1024
) -> Iterator[bytes]:
    """The rejected-rows file as UTF-8 with a byte-order mark (spreadsheet
    programs then read it as UTF-8), in chunks: memory stays flat however
    many rows a big import rejected."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = RejectedRowsWriter(buffer)
    for rejected in _rejected_rows(session, record):
        writer.write(rejected)
        if buffer.tell() >= chunk_size:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def write_rejected_rows(session: Session, record: ContactImport, out: TextIO) -> int:
    """Write the import's rejected rows as the command line's rejected-rows
    file; returns how many."""
    writer = RejectedRowsWriter(out)
    for rejected in _rejected_rows(session, record):
        writer.write(rejected)
    return writer.count
