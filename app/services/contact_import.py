"""CSV import of contacts into a target list.

File rules (a broken file raises ``ImportFileError`` and imports nothing):
- the first non-blank row is the header; it needs an email column and no two
  columns may mean the same thing (``Email`` and ``E-mail``, ``Notes`` and
  ``notes``);
- headers map case-insensitively, trimmed, ``_``/``-`` read as spaces, with
  the synonyms in ``HEADER_SYNONYMS``; every other named column is a custom
  field, keyed by its header as written; columns without a header hold
  nothing; the ``sluice_row``/``sluice_reason`` columns of a rejected-rows
  file and the read-only columns of an export (``email_status``,
  ``opted_out`` …) are skipped and listed in ``ignored_columns``, so a
  corrected rejected-rows file or an export imports back as it is;
- the delimiter is whichever of ``,``, ``;`` and tab occurs most in the header
  line outside quotes (``,`` when none does);
- text is decoded with ``encoding`` (default UTF-8 with or without BOM) using
  ``surrogateescape``, so undecodable bytes cost only their own row.

Row rules (a bad row is rejected with its number and reason, the rest goes on):
- the row number is the spreadsheet row (the header is row 1 when the file
  starts with it); the physical line is named when it differs, e.g. for a
  record with embedded newlines;
- blank rows hold no data and are skipped (counted as ``blank_rows``);
- rejected: more non-empty cells than the header has columns (fewer cells are
  padded with empty ones), a value under a column without a header, a NUL
  character, undecodable bytes, a cell over the CSV field limit, an invalid
  address, a name over 200 characters, an invalid type, a custom value over
  ``CUSTOM_VALUE_MAX_LENGTH`` characters;
- a typo suggestion or one of the company's own sending addresses is a
  warning, never a rejection;
- cells are stored exactly as written (``=cmd|…`` stays text); a leading
  ``'`` that Sluice's own CSV writer added before a formula character is
  removed (``contact_export.unescape_formula``), so exports round-trip.

Contact rules:
- ``default_type`` is the audience type of rows without one; a row's own type
  wins;
- a new address creates a contact; an existing contact is left as it is
  ("unchanged") unless ``update``, where non-empty cells overwrite, empty cells
  keep the stored value, custom fields merge key by key, and a contact whose
  values end up the same counts as "unchanged";
- a later row with an address already met in this file is "merged": its
  non-empty cells win over the earlier ones (whatever ``update`` says) when the
  contact was created by this import or ``update`` is set; a contact that
  existed before and is not being updated stays as it was;
- every accepted row's contact is added to the target list (created if it
  does not exist);
- every data row is counted exactly once: created + updated + unchanged +
  merged + rejected = rows.

Work is done in batches of ``batch_size`` rows, set-based (the same few
statements per batch whatever its size: look up the batch's addresses, insert
the new contacts, update the changed ones, add all to the list), committed
per batch so a crash keeps what was done. The addresses already met are kept
in ``contact_import_addresses``, not in memory, so memory stays flat whatever
the size of the file. Each import is recorded in ``contact_imports`` with its
counts.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TextIO

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Integer,
    Subquery,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from app.clock import Clock
from app.models import Contact, TargetList, TargetListMember
from app.models.base import UTCDateTime
from app.models.imports import ContactImport, ContactImportAddress
from app.services.addresses import InvalidAddress, check_address
from app.services.contact_export import EXPORT_READ_ONLY_COLUMNS, safe_csv_row, unescape_formula
from app.services.contacts import NAME_MAX_LENGTH, ContactError, clean_audience_type, clean_name

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

DEFAULT_BATCH_SIZE: Final = 2000
CUSTOM_VALUE_MAX_LENGTH: Final = 10_000
# A physical line longer than this is refused before the csv module sees it,
# so one giant line cannot fill the memory (a cell is limited to
# csv.field_size_limit() characters anyway, 131,072 by default).
MAX_LINE_CHARS: Final = 16 * 1024 * 1024
DELIMITERS: Final = (",", ";", "\t")
REJECTED_FILE_COLUMNS: Final = ("sluice_row", "sluice_reason")
_SKIPPED_COLUMNS: Final = frozenset((*REJECTED_FILE_COLUMNS, *EXPORT_READ_ONLY_COLUMNS))

# Normalised header (see _header_key) -> contact field.
HEADER_SYNONYMS: Final = {
    **dict.fromkeys(("email", "e mail", "email address", "e mail address", "mail"), "email"),
    **dict.fromkeys(("first name", "firstname", "given name"), "first_name"),
    **dict.fromkeys(("last name", "lastname", "surname", "family name"), "last_name"),
    **dict.fromkeys(("company", "organization", "organisation", "account name"), "company"),
    **dict.fromkeys(("type", "audience type"), "audience_type"),
}
_FIELD_LABELS: Final = {
    "email": "email",
    "first_name": "first name",
    "last_name": "last name",
    "company": "company",
    "audience_type": "type",
}


class ImportFileError(ValueError):
    """The file as a whole cannot be imported; nothing was imported."""


@dataclass(frozen=True)
class RowPosition:
    """Where a row is: its spreadsheet row and its physical lines in the file."""

    row: int
    first_line: int
    last_line: int

    def __str__(self) -> str:
        if self.first_line != self.last_line:
            return f"row {self.row} (lines {self.first_line}-{self.last_line})"
        if self.first_line != self.row:
            return f"row {self.row} (line {self.first_line})"
        return f"row {self.row}"


@dataclass(frozen=True, eq=False)
class CsvLayout:
    """The header of the file and what each column maps to."""

    delimiter: str
    header: tuple[str, ...]
    field_columns: dict[str, int]
    custom_columns: tuple[tuple[int, str], ...]
    unnamed_columns: tuple[int, ...]
    ignored_columns: tuple[str, ...]
    # Columns copied to the rejected-rows file (all but its own two columns).
    passthrough_columns: tuple[int, ...]


@dataclass(frozen=True)
class RejectedRow:
    position: RowPosition
    reason: str
    cells: tuple[str, ...]  # as read; empty when the row could not be read at all
    layout: CsvLayout = field(repr=False, compare=False)


@dataclass(frozen=True)
class RowWarning:
    position: RowPosition
    email: str
    message: str


@dataclass
class ImportSummary:
    list_name: str
    import_id: int = 0
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    rejected: int = 0
    warnings: int = 0
    blank_rows: int = 0
    ignored_columns: tuple[str, ...] = ()


class _RowRejected(ValueError):
    """A data row cannot be imported; the message says why."""


class _LineTooLong(Exception):
    pass


class _ByteCounter(io.RawIOBase):
    """Passes bytes through from ``source``, counting them for progress."""

    def __init__(self, source: BinaryIO) -> None:
        super().__init__()
        self._source = source
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._source.read(len(view))
        view[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


class _PhysicalLines:
    """The file's physical lines for ``csv.reader``, counted.

    A line longer than ``MAX_LINE_CHARS`` raises ``_LineTooLong`` (its rest
    skipped) instead of being read whole into memory; ``csv.reader`` starts
    afresh on the next line after any exception.
    """

    def __init__(self, text: io.TextIOBase) -> None:
        self._text = text
        self._pushed_back: str | None = None
        self.count = 0

    def __iter__(self) -> _PhysicalLines:
        return self

    def __next__(self) -> str:
        if self._pushed_back is not None:
            line, self._pushed_back = self._pushed_back, None
        else:
            # +2 leaves room for a CRLF after a line of exactly the limit.
            line = self._text.readline(MAX_LINE_CHARS + 2)
            if not line:
                raise StopIteration
        self.count += 1
        if len(line.rstrip("\r\n")) > MAX_LINE_CHARS:
            self._skip_rest_of_line()
            raise _LineTooLong
        return line

    def push_back(self, line: str) -> None:
        self._pushed_back = line
        self.count -= 1

    def _skip_rest_of_line(self) -> None:
        while True:
            chunk = self._text.readline(MAX_LINE_CHARS)
            if not chunk or chunk.endswith(("\n", "\r")):
                return


@dataclass(frozen=True)
class _Record:
    position: RowPosition
    cells: list[str]
    problem: str = ""  # set when the record could not be read


@dataclass(frozen=True)
class _ContactRow:
    position: RowPosition
    email: str
    key: str
    first_name: str
    last_name: str
    company: str
    audience_type: str  # "" when the row has none
    custom_fields: dict[str, str]


@dataclass(frozen=True)
class _Values:
    """The fields an import may change, as stored or as they will be."""

    first_name: str
    last_name: str
    company: str
    audience_type: str
    custom_fields: dict[str, Any]

    def merged(self, row: _ContactRow, fallback_type: str = "") -> _Values:
        """Non-empty cells win; custom fields merge key by key."""
        return _Values(
            first_name=row.first_name or self.first_name,
            last_name=row.last_name or self.last_name,
            company=row.company or self.company,
            audience_type=row.audience_type or fallback_type or self.audience_type,
            custom_fields={**self.custom_fields, **row.custom_fields},
        )


@dataclass
class _Plan:
    """What one batch does to one address."""

    key: str
    email: str
    contact_id: int | None  # None: a contact to insert
    stored: _Values | None  # the values in the database; None for a new contact
    values: _Values  # the values it will have
    may_change: bool  # created by this import, or --update
    first_meeting: bool  # first row of this import with the address
    stale_meeting: bool = False  # met before, but the contact has since gone


# ---------------------------------------------------------------- the header


def detect_delimiter(header_line: str) -> str:
    """The delimiter used most often outside quotes in the header line."""
    counts = dict.fromkeys(DELIMITERS, 0)
    in_quotes = False
    for char in header_line:
        if char == '"':
            in_quotes = not in_quotes
        elif not in_quotes and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=counts.__getitem__)  # ties go to ","
    return best if counts[best] else ","


def _header_key(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def _encoding_label(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "UTF-8" if name in {"utf-8", "utf-8-sig"} else name


def _undecodable_byte(text: str) -> int | None:
    """The first byte ``surrogateescape`` could not decode in ``text``, if any."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return ord(text[error.start]) - 0xDC00
    return None


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _build_layout(cells: list[str], delimiter: str, encoding: str) -> CsvLayout:
    header = tuple(cell.lstrip("\ufeff").strip() for cell in cells)
    joined = "".join(header)
    if _undecodable_byte(joined) is not None:
        raise ImportFileError(
            f"the header row is not valid {_encoding_label(encoding)}; "
            "re-run with --encoding (for example cp1252 or latin-1)"
        )
    if "\x00" in joined:
        raise ImportFileError("the header row contains NUL characters: is this a CSV file?")
    field_columns: dict[str, int] = {}
    custom_columns: list[tuple[int, str]] = []
    unnamed_columns: list[int] = []
    ignored_columns: list[str] = []
    claimed: dict[str, int] = {}
    for index, name in enumerate(header):
        if not name:
            unnamed_columns.append(index)
            continue
        if name.lower() in _SKIPPED_COLUMNS:
            ignored_columns.append(name)
            continue
        contact_field = HEADER_SYNONYMS.get(_header_key(name))
        meaning = contact_field or f"custom field {name.casefold()!r}"
        if meaning in claimed:
            other = claimed[meaning]
            raise ImportFileError(
                f"columns {other + 1} ({header[other]!r}) and {index + 1} ({name!r}) "
                f"both hold {_FIELD_LABELS.get(meaning, meaning)}; keep one of them"
            )
        claimed[meaning] = index
        if contact_field:
            field_columns[contact_field] = index
        elif len(name) > NAME_MAX_LENGTH:
            raise ImportFileError(
                f"column {index + 1}: a header is at most {NAME_MAX_LENGTH} characters"
            )
        else:
            custom_columns.append((index, name))
    if "email" not in field_columns:
        found = ", ".join(repr(_shorten(name)) for name in header if name) or "no names"
        raise ImportFileError(
            "no email column: the header needs one named email, e-mail, "
            f"email address or mail (found {found}; detected delimiter {delimiter!r})"
        )
    passthrough = tuple(
        index for index, name in enumerate(header) if name.lower() not in REJECTED_FILE_COLUMNS
    )
    return CsvLayout(
        delimiter,
        header,
        field_columns,
        tuple(custom_columns),
        tuple(unnamed_columns),
        tuple(ignored_columns),
        passthrough,
    )


def _read_header(lines: _PhysicalLines, encoding: str) -> tuple[CsvLayout, Any, int]:
    """The layout, a csv reader positioned after the header, and the header's
    row number."""
    row = 0
    try:
        for line in lines:
            row += 1
            if line.strip():
                break
        else:
            raise ImportFileError("the file is empty: expected a header row with an email column")
        delimiter = detect_delimiter(line)
        lines.push_back(line)
        reader = csv.reader(lines, delimiter=delimiter)
        cells = next(reader)
    except csv.Error as error:
        raise ImportFileError(f"cannot read the header row: {error}") from None
    except _LineTooLong:
        message = f"the header row is longer than {MAX_LINE_CHARS:,} characters"
        raise ImportFileError(message) from None
    return _build_layout(cells, delimiter, encoding), reader, row


# ---------------------------------------------------------------- the rows


def _records(reader: Iterator[list[str]], lines: _PhysicalLines, row: int) -> Iterator[_Record]:
    """Every record after the header, readable or not, with its position."""
    while True:
        first_line = lines.count + 1
        problem = ""
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            cells, problem = [], _csv_problem(error)
        except _LineTooLong:
            cells, problem = [], f"a line is longer than {MAX_LINE_CHARS:,} characters"
        row += 1
        yield _Record(RowPosition(row, first_line, max(first_line, lines.count)), cells, problem)


def _csv_problem(error: csv.Error) -> str:
    if "field limit" in str(error):
        return (
            f"a cell is longer than {csv.field_size_limit():,} characters "
            "(the rest of its line was skipped)"
        )
    return f"not readable as CSV: {error}"


def _column_name(layout: CsvLayout, index: int) -> str:
    if index < len(layout.header) and layout.header[index]:
        return repr(_shorten(layout.header[index]))
    return str(index + 1)


def _check_cells(cells: list[str], layout: CsvLayout, encoding: str) -> None:
    """Raise ``_RowRejected`` for cells no column can hold or no text can be."""
    width = len(layout.header)
    if len(cells) > width and any(cell.strip() for cell in cells[width:]):
        raise _RowRejected(f"has {len(cells)} cells but the header has {width} columns")
    for index in layout.unnamed_columns:
        if index < len(cells) and cells[index].strip():
            raise _RowRejected(f"column {index + 1} has a value but no header")
    joined = "".join(cells)
    if "\x00" in joined:
        index = next(i for i, cell in enumerate(cells) if "\x00" in cell)
        raise _RowRejected(f"column {_column_name(layout, index)} contains a NUL character")
    if _undecodable_byte(joined) is not None:
        for index, cell in enumerate(cells):
            byte = _undecodable_byte(cell)
            if byte is not None:
                raise _RowRejected(
                    f"not valid {_encoding_label(encoding)}: byte 0x{byte:02x} in column "
                    f"{_column_name(layout, index)}; re-run with --encoding "
                    "(for example cp1252 or latin-1)"
                )


def _parse_row(
    record: _Record, layout: CsvLayout, encoding: str, own_addresses: frozenset[str]
) -> tuple[_ContactRow, tuple[str, ...]]:
    """The row's contact data and its address warnings.

    Raises ``_RowRejected``, ``InvalidAddress`` or ``ContactError``.
    """
    cells = record.cells
    _check_cells(cells, layout, encoding)

    def cell(index: int | None) -> str:
        if index is None or index >= len(cells):
            return ""
        return unescape_formula(cells[index])

    columns = layout.field_columns
    raw_email = cell(columns["email"])
    try:
        check = check_address(raw_email, own_addresses)
    except InvalidAddress as error:
        shown = f" {_shorten(raw_email.strip())!r}" if raw_email.strip() else ""
        raise _RowRejected(f"email{shown}: {error}") from None
    raw_type = cell(columns.get("audience_type")).strip()
    contact_row = _ContactRow(
        position=record.position,
        email=check.address,
        key=check.key,
        first_name=clean_name("first name", cell(columns.get("first_name"))),
        last_name=clean_name("last name", cell(columns.get("last_name"))),
        company=clean_name("company", cell(columns.get("company"))),
        audience_type=clean_audience_type(raw_type) if raw_type else "",
        custom_fields=_custom_fields(layout, cell),
    )
    return contact_row, check.warnings


def _custom_fields(layout: CsvLayout, cell: Callable[[int], str]) -> dict[str, str]:
    """Non-empty custom values, stored exactly as written."""
    values: dict[str, str] = {}
    for index, key in layout.custom_columns:
        value = cell(index)
        if not value.strip():
            continue
        if len(value) > CUSTOM_VALUE_MAX_LENGTH:
            raise _RowRejected(
                f"{_shorten(key)}: at most {CUSTOM_VALUE_MAX_LENGTH:,} characters "
                f"(got {len(value):,})"
            )
        values[key] = value
    return values


# ---------------------------------------------------------------- the database


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _insert_ignoring_conflicts(session: Session, entity: type[Any]) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING, in the session's SQL dialect."""
    dialect = _dialect(session)
    if dialect == "postgresql":
        return postgresql.insert(entity).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(entity).on_conflict_do_nothing()
    raise NotImplementedError(f"contact import does not support {dialect}")  # pragma: no cover


def _rows_parameter(
    session: Session,
    name: str,
    columns: dict[str, TypeEngine[Any]],
    rows: Sequence[Sequence[Any]],
) -> tuple[Subquery, dict[str, Any]]:
    """A batch of rows as a table in SQL, sent as bound parameters.

    PostgreSQL gets one array per column (``unnest``), SQLite one JSON array
    of rows (``json_each``); a JSON column's values are JSON text. The SQL is
    the same whatever the batch holds. With one placeholder per value
    (a VALUES or IN list) every batch made a new large statement: psycopg
    spent most of a PostgreSQL import parsing them, and SQLite's statement
    cache (128 statements) made memory grow with the file.
    """
    params: dict[str, Any]
    values: list[ColumnElement[Any]]
    if _dialect(session) == "postgresql":
        params = {f"{name}_{column}": [row[i] for row in rows] for i, column in enumerate(columns)}
        arrays = (
            func.unnest(
                *(
                    bindparam(f"{name}_{column}", type_=postgresql.ARRAY(_array_type(type_)))
                    for column, type_ in columns.items()
                )
            )
            .table_valued(*columns)
            .render_derived()
        )
        values = [
            cast(arrays.c[column], type_) if isinstance(type_, JSON) else arrays.c[column]
            for column, type_ in columns.items()
        ]
    else:
        params = {name: json.dumps(rows)}
        entries = func.json_each(bindparam(name, type_=Text)).table_valued("value")
        values = [
            type_coerce(func.json_extract(entries.c.value, f"$[{index}]"), type_)
            for index, type_ in enumerate(columns.values())
        ]
    labelled = (value.label(column) for value, column in zip(values, columns, strict=True))
    return select(*labelled).subquery(name), params


def _array_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    # PostgreSQL has no json[] input worth using: JSON travels as text and is
    # cast back per row.
    return Text() if isinstance(type_, JSON) else type_


_NEW_CONTACT_COLUMNS: Final[dict[str, TypeEngine[Any]]] = {
    "email": Text(),
    "email_lower": Text(),
    "first_name": Text(),
    "last_name": Text(),
    "company": Text(),
    "audience_type": Text(),
    "custom_fields": JSON(),
}


def _new_contact_row(plan: _Plan) -> tuple[Any, ...]:
    values = plan.values
    return (
        plan.email,
        plan.key,
        values.first_name,
        values.last_name,
        values.company,
        values.audience_type,
        json.dumps(values.custom_fields),
    )


def _insert_new_contacts(session: Session, plans: list[_Plan], now: datetime) -> dict[str, int]:
    """Insert the planned contacts, skipping addresses that exist by now;
    returns address key -> id of the contacts this call inserted. Column
    defaults apply (``from_select`` includes them)."""
    source, params = _rows_parameter(
        session, "new_contacts", _NEW_CONTACT_COLUMNS, [_new_contact_row(plan) for plan in plans]
    )
    rows = select(
        *source.c,
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
    ).where(true())  # SQLite: INSERT … SELECT needs a WHERE before ON CONFLICT
    statement = (
        _insert_ignoring_conflicts(session, Contact)
        .from_select([*_NEW_CONTACT_COLUMNS, "created_at", "updated_at"], rows)
        .returning(Contact.email_lower, Contact.id)
    )
    # Through the connection: the ORM would take a dict of parameters for one row.
    result = session.connection().execute(statement, params)
    return {key: contact_id for key, contact_id in result if key is not None}


def _stored_values(custom_fields: Any, *names: str) -> _Values:
    first_name, last_name, company, audience_type = names
    custom = dict(custom_fields) if isinstance(custom_fields, dict) else {}
    return _Values(first_name, last_name, company, audience_type, custom)


def _get_or_create_list(session: Session, list_name: str, clock: Clock) -> TargetList:
    target_list = session.scalar(select(TargetList).where(TargetList.name == list_name))
    if target_list is None:
        now = clock.now()
        target_list = TargetList(name=list_name, created_at=now, updated_at=now)
        session.add(target_list)
        session.flush()
    return target_list


class _BatchWriter:
    """Applies batches of valid rows to the database, one transaction each."""

    def __init__(
        self,
        session: Session,
        record: ContactImport,
        summary: ImportSummary,
        *,
        update: bool,
        default_type: str,
        clock: Clock,
    ) -> None:
        self.session = session
        self.import_id = record.id
        self.target_list_id = record.target_list_id
        self.summary = summary
        self.update = update
        self.default_type = default_type
        self.clock = clock

    def apply(self, rows: Sequence[_ContactRow]) -> None:
        keys = list(dict.fromkeys(row.key for row in rows))
        met_before = self._met_before(keys)
        stored = self._stored(keys)
        plans: dict[str, _Plan] = {}
        for row in rows:
            plan = plans.get(row.key)
            if plan is None:
                plans[row.key] = self._plan(row, met_before.get(row.key), stored.get(row.key))
            else:
                self._merge_duplicate(plan, row)
        self._write(list(plans.values()))

    def finish(self) -> None:
        """Forget the addresses met and stamp the import as finished."""
        self.session.execute(
            delete(ContactImportAddress).where(ContactImportAddress.import_id == self.import_id)
        )
        self._save_counts(finished=True)
        self.session.commit()

    # -- planning

    def _met_before(self, keys: list[str]) -> dict[str, bool]:
        """Addresses an earlier batch met -> whether this import created them."""
        batch_keys, params = self._keys_parameter(keys)
        rows = self.session.execute(
            select(ContactImportAddress.email_lower, ContactImportAddress.created).where(
                ContactImportAddress.import_id == self.import_id,
                ContactImportAddress.email_lower.in_(select(batch_keys.c.key)),
            ),
            params,
        )
        return {key: created for key, created in rows}

    def _keys_parameter(self, keys: list[str]) -> tuple[Subquery, dict[str, Any]]:
        return _rows_parameter(
            self.session, "batch_keys", {"key": Text()}, [(key,) for key in keys]
        )

    def _stored(self, keys: list[str]) -> dict[str, tuple[int, _Values]]:
        batch_keys, params = self._keys_parameter(keys)
        rows = self.session.execute(
            select(
                Contact.id,
                Contact.email_lower,
                Contact.custom_fields,
                Contact.first_name,
                Contact.last_name,
                Contact.company,
                Contact.audience_type,
            ).where(Contact.email_lower.in_(select(batch_keys.c.key))),
            params,
        )
        return {
            key: (contact_id, _stored_values(custom, *names))
            for contact_id, key, custom, *names in rows
        }

    def _plan(
        self, row: _ContactRow, created_before: bool | None, stored: tuple[int, _Values] | None
    ) -> _Plan:
        """The plan for the first row of an address in this batch."""
        if stored is None:
            values = _Values(
                row.first_name,
                row.last_name,
                row.company,
                row.audience_type or self.default_type or "contact",
                dict(row.custom_fields),
            )
            self.summary.created += 1
            return _Plan(
                row.key,
                row.email,
                None,
                None,
                values,
                may_change=True,
                first_meeting=created_before is None,
                stale_meeting=created_before is not None,
            )
        contact_id, values = stored
        if created_before is not None:  # a duplicate of a row in an earlier batch
            plan = _Plan(
                row.key, row.email, contact_id, values, values, created_before or self.update, False
            )
            self._merge_duplicate(plan, row)
            return plan
        new_values = values.merged(row, self.default_type) if self.update else values
        if new_values != values:
            self.summary.updated += 1
        else:
            self.summary.unchanged += 1
        return _Plan(row.key, row.email, contact_id, values, new_values, self.update, True)

    def _merge_duplicate(self, plan: _Plan, row: _ContactRow) -> None:
        # The --type default is not a cell: it never overrides an earlier row's type.
        if plan.may_change:
            plan.values = plan.values.merged(row)
        self.summary.merged += 1

    # -- writing

    def _write(self, plans: list[_Plan]) -> None:
        now = self.clock.now()
        new = [plan for plan in plans if plan.contact_id is None]
        if new:
            self._insert_contacts(new, now)
        changed = [plan for plan in plans if plan.stored is not None and plan.values != plan.stored]
        if changed:
            self._update_contacts(changed, now)
        self._remember(plans)
        self._add_to_list(plans, now)
        self._save_counts(finished=False)
        self.session.commit()

    def _insert_contacts(self, plans: list[_Plan], now: datetime) -> None:
        inserted = _insert_new_contacts(self.session, plans, now)
        raced = [plan for plan in plans if plan.key not in inserted]
        for plan in plans:
            plan.contact_id = inserted.get(plan.key)
        if raced:
            self._adopt_raced(raced)

    def _adopt_raced(self, plans: list[_Plan]) -> None:
        """Another writer created these addresses after this batch looked them
        up: keep its contacts as they are, as if they had existed before."""
        stored = self._stored([plan.key for plan in plans])
        for plan in plans:
            contact_id, values = stored[plan.key]
            plan.contact_id, plan.stored, plan.values = contact_id, values, values
            plan.may_change = False
            self.summary.created -= 1
            self.summary.unchanged += 1

    def _update_contacts(self, plans: list[_Plan], now: datetime) -> None:
        self.session.execute(
            update(Contact),
            [
                {
                    "id": plan.contact_id,
                    "first_name": plan.values.first_name,
                    "last_name": plan.values.last_name,
                    "company": plan.values.company,
                    "audience_type": plan.values.audience_type,
                    "custom_fields": plan.values.custom_fields,
                    "updated_at": now,
                }
                for plan in plans
            ],
        )

    def _remember(self, plans: list[_Plan]) -> None:
        """Record the addresses met for the first time, for later batches."""
        stale = [plan.key for plan in plans if plan.stale_meeting]
        if stale:
            self.session.execute(
                delete(ContactImportAddress).where(
                    ContactImportAddress.import_id == self.import_id,
                    ContactImportAddress.email_lower.in_(stale),
                )
            )
        first = [plan for plan in plans if plan.first_meeting or plan.stale_meeting]
        if not first:
            return
        met, params = _rows_parameter(
            self.session,
            "met_addresses",
            {"email_lower": Text(), "contact_id": Integer(), "created": Boolean()},
            [
                (plan.key, plan.contact_id, plan.may_change and plan.stored is None)
                for plan in first
            ],
        )
        rows = select(literal(self.import_id), *met.c)
        statement = insert(ContactImportAddress).from_select(
            ["import_id", "email_lower", "contact_id", "created"], rows
        )
        self.session.connection().execute(statement, params)

    def _add_to_list(self, plans: list[_Plan], now: datetime) -> None:
        members, params = _rows_parameter(
            self.session,
            "members",
            {"contact_id": Integer()},
            [(plan.contact_id,) for plan in plans],
        )
        rows = select(
            literal(self.target_list_id), members.c.contact_id, literal(now, UTCDateTime())
        )
        statement = _insert_ignoring_conflicts(self.session, TargetListMember).from_select(
            ["target_list_id", "contact_id", "added_at"],
            rows.where(true()),  # SQLite: INSERT … SELECT needs a WHERE before ON CONFLICT
        )
        self.session.connection().execute(statement, params)

    def _save_counts(self, *, finished: bool) -> None:
        summary = self.summary
        values: dict[str, Any] = {
            "rows_total": summary.rows,
            "rows_created": summary.created,
            "rows_updated": summary.updated,
            "rows_unchanged": summary.unchanged,
            "rows_merged": summary.merged,
            "rows_rejected": summary.rejected,
            "warning_count": summary.warnings,
        }
        if finished:
            values["finished_at"] = self.clock.now()
        self.session.execute(
            update(ContactImport).where(ContactImport.id == self.import_id).values(**values),
            execution_options={"synchronize_session": False},
        )


# ---------------------------------------------------------------- the service


def import_contacts(
    session: Session,
    source: BinaryIO,
    *,
    list_name: str,
    update: bool,
    default_type: str | None,
    clock: Clock,
    own_addresses: frozenset[str],
    on_rejected: Callable[[RejectedRow], None],
    on_warning: Callable[[RowWarning], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    encoding: str = "utf-8-sig",
    source_name: str = "",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportSummary:
    """Import contacts from the CSV bytes in ``source`` into list ``list_name``.

    The rules are in this module's docstring. ``on_rejected`` and
    ``on_warning`` are called as rows are read; ``on_progress`` with the bytes
    read so far after each committed batch. Commits after every batch.

    Raises ``ImportFileError`` for a file that cannot be imported at all, and
    ``ContactError`` for a bad ``list_name`` or ``default_type`` (both before
    anything is written). ``LookupError`` for an unknown ``encoding``.
    """
    list_name = clean_name("list name", list_name)
    if not list_name:
        raise ContactError("list name: must not be empty")
    default_type = clean_audience_type(default_type) if default_type else ""
    codecs.lookup(encoding)
    counter = _ByteCounter(source)
    # surrogateescape: an undecodable byte costs its own row, not the file.
    text = io.TextIOWrapper(
        io.BufferedReader(counter), encoding=encoding, errors="surrogateescape", newline=""
    )
    lines = _PhysicalLines(text)
    layout, reader, header_row = _read_header(lines, encoding)
    record = _start_import(
        session,
        clock,
        source_name=source_name,
        list_name=list_name,
        update=update,
        default_type=default_type,
    )
    summary = ImportSummary(
        list_name=list_name, import_id=record.id, ignored_columns=layout.ignored_columns
    )
    writer = _BatchWriter(
        session, record, summary, update=update, default_type=default_type, clock=clock
    )
    try:
        for batch in _valid_row_batches(
            _records(reader, lines, header_row),
            layout,
            summary,
            encoding=encoding,
            own_addresses=own_addresses,
            batch_size=batch_size,
            on_rejected=on_rejected,
            on_warning=on_warning,
        ):
            writer.apply(batch)
            if on_progress is not None:
                on_progress(counter.bytes_read)
        writer.finish()
    except BaseException:
        session.rollback()
        _forget_addresses(session, summary.import_id)
        raise
    if on_progress is not None:
        on_progress(counter.bytes_read)
    return summary


def _start_import(
    session: Session,
    clock: Clock,
    *,
    source_name: str,
    list_name: str,
    update: bool,
    default_type: str,
) -> ContactImport:
    """Create the target list if needed and record the import (committed)."""
    record = ContactImport(
        file_name=source_name[:500],
        target_list_id=_get_or_create_list(session, list_name, clock).id,
        list_name=list_name,
        update_existing=update,
        default_type=default_type,
        started_at=clock.now(),
    )
    session.add(record)
    session.commit()
    return record


def _valid_row_batches(
    records: Iterable[_Record],
    layout: CsvLayout,
    summary: ImportSummary,
    *,
    encoding: str,
    own_addresses: frozenset[str],
    batch_size: int,
    on_rejected: Callable[[RejectedRow], None],
    on_warning: Callable[[RowWarning], None] | None,
) -> Iterator[list[_ContactRow]]:
    """Batches of valid rows; rejected rows and warnings are reported as met."""
    batch: list[_ContactRow] = []
    for record in records:
        if not record.problem and not any(cell.strip() for cell in record.cells):
            summary.blank_rows += 1
            continue
        summary.rows += 1
        try:
            if record.problem:
                raise _RowRejected(record.problem)
            row, warnings = _parse_row(record, layout, encoding, own_addresses)
        except (_RowRejected, InvalidAddress, ContactError) as error:
            summary.rejected += 1
            on_rejected(RejectedRow(record.position, str(error), tuple(record.cells), layout))
            continue
        for message in warnings:
            summary.warnings += 1
            if on_warning is not None:
                on_warning(RowWarning(record.position, row.email, message))
        batch.append(row)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _forget_addresses(session: Session, import_id: int) -> None:
    """Best effort after a failure: the address log is only useful while running."""
    try:
        session.execute(
            delete(ContactImportAddress).where(ContactImportAddress.import_id == import_id)
        )
        session.commit()
    except Exception:  # the original error is the one to raise
        session.rollback()


# ---------------------------------------------------------------- rejected rows file


class RejectedRowsWriter:
    """Writes rejected rows as CSV: ``sluice_row`` and ``sluice_reason``, then
    the row's cells as read, under the input's header and delimiter.

    The importer skips the two ``sluice_*`` columns, so a corrected file can be
    imported again as it is. Cells go through the CSV-injection escape.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._writer: Any = None
        self.count = 0

    def write(self, rejected: RejectedRow) -> None:
        layout = rejected.layout
        if self._writer is None:
            self._writer = csv.writer(self._out, delimiter=layout.delimiter)
            names = [layout.header[index] for index in layout.passthrough_columns]
            self._writer.writerow(safe_csv_row([*REJECTED_FILE_COLUMNS, *names]))
        cells = rejected.cells
        kept = [cells[index] if index < len(cells) else "" for index in layout.passthrough_columns]
        extra = cells[len(layout.header) :]
        self._writer.writerow(
            safe_csv_row([str(rejected.position.row), rejected.reason, *kept, *extra])
        )
        self.count += 1
