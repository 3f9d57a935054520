"""CSV imports started in the browser: the upload's encoding, the import
itself (``contact_import.import_contacts``, the same rules as the command
line), and the report kept for the page and the rejected-rows download.

Rules:

- **Size:** an upload is imported while the request waits, so it is at most
  ``UPLOAD_MAX_BYTES`` (5 MiB, some 50,000 rows, a few seconds); a bigger
  file goes through ``sluice contacts import`` (which streams any size with
  a progress bar). The page says so.
- **Encoding:** "detect" reads the bytes: a UTF-16 byte-order mark means
  UTF-16; bytes that are valid UTF-8 (with or without a BOM) mean UTF-8;
  anything else is taken as Windows-1252 (what Excel writes on Western
  systems), or Latin-1 when not even that decodes. The person can also name
  the encoding. A row whose bytes do not decode is rejected with the byte
  and the column, as on the command line.
- **Report:** every rejected row (its number, the field when the reason
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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, TextIO

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models.imports import ContactImport, ContactImportProblem, ImportProblemKind
from app.services.contact_csv import (
    REJECTED_FILE_COLUMNS,
    CsvLayout,
    RejectedRow,
    RejectedRowsWriter,
    RowPosition,
    RowWarning,
)
from app.services.contact_import import ImportSummary, import_contacts

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
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8-sig"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


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
class _Collected:
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[RowWarning] = field(default_factory=list)


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
) -> WebImport:
    """Import the uploaded ``data`` and store its report (committed).

    Raises ``UploadError`` for an upload that is too big, empty or has an
    unknown encoding, and what ``import_contacts`` raises
    (``ImportFileError``, ``ContactError``) for a file or list name that
    cannot be imported; nothing is imported then.
    """
    if len(data) > UPLOAD_MAX_BYTES:
        raise UploadError(
            "file",
            f"the file is {len(data):,} bytes; the browser imports files up to "
            f"{UPLOAD_MAX_BYTES // (1024 * 1024)} MB. Import bigger files with the "
            "command line: sluice contacts import FILE.csv --list NAME",
        )
    if not data:
        raise UploadError("file", "the file is empty: choose a CSV file with a header row")
    if encoding not in ENCODING_VALUES:
        raise UploadError("encoding", "choose one of the encodings offered")
    chosen = detect_encoding(data) if encoding == DETECT else encoding
    collected = _Collected()
    summary = import_contacts(
        session,
        io.BytesIO(data),
        list_name=list_name,
        update=update,
        default_type=default_type,
        clock=clock,
        own_addresses=own_addresses,
        on_rejected=collected.rejected.append,
        on_warning=collected.warnings.append,
        encoding=chosen,
        source_name=file_name,
    )
    _store_report(session, summary.import_id, collected)
    session.commit()
    return WebImport(summary, chosen)


def _store_report(session: Session, import_id: int, collected: _Collected) -> None:
    record = session.get(ContactImport, import_id)
    assert record is not None  # import_contacts committed it
    if collected.rejected:
        layout = collected.rejected[0].layout
        record.csv_header = [_storable(name) for name in layout.header]
        record.csv_delimiter = layout.delimiter
    rows = [_rejected_row(import_id, rejected) for rejected in collected.rejected]
    rows += [_warning_row(import_id, warning) for warning in collected.warnings]
    if rows:
        session.execute(insert(ContactImportProblem), rows)


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


def write_rejected_rows(session: Session, record: ContactImport, out: TextIO) -> int:
    """Write the import's rejected rows as the command line's rejected-rows
    file; returns how many."""
    writer = RejectedRowsWriter(out)
    for rejected in _rejected_rows(session, record):
        writer.write(rejected)
    return writer.count
