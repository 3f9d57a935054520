"""Reading a contacts CSV file: its header, its records, and each row's cells
checked and parsed into a ``ContactRow``.

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

The file is read as a stream, one physical line at a time, so memory stays
flat whatever its size. What happens to a valid row's contact is
``contact_import``'s business.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TextIO

from app.services.addresses import InvalidAddress, check_address
from app.services.contact_export import EXPORT_READ_ONLY_COLUMNS, safe_csv_row, unescape_formula
from app.services.contacts import NAME_MAX_LENGTH, clean_audience_type, clean_name

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

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
    """A data row that was not imported, and why."""

    position: RowPosition
    reason: str
    cells: tuple[str, ...]  # as read; empty when the row could not be read at all
    layout: CsvLayout = field(repr=False, compare=False)


@dataclass(frozen=True)
class RowWarning:
    """Something worth a look in a row that was imported all the same."""

    position: RowPosition
    email: str
    message: str


class RowRejected(ValueError):
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
class CsvRecord:
    """One record of the file after the header, as read: its cells, or why
    they could not be read."""

    position: RowPosition
    cells: list[str]
    problem: str = ""  # set when the record could not be read

    @property
    def is_blank(self) -> bool:
        """A readable record without a non-blank cell holds no data."""
        return not self.problem and not any(cell.strip() for cell in self.cells)


@dataclass(frozen=True)
class ContactRow:
    """A valid data row: the contact's values, cleaned, as the file gives them."""

    position: RowPosition
    email: str
    key: str
    first_name: str
    last_name: str
    company: str
    audience_type: str  # "" when the row has none
    custom_fields: dict[str, str]


class ContactCsvFile:
    """A contacts CSV file read as a stream from its bytes.

    Opening it reads and checks the header: ``ImportFileError`` for a file
    that cannot be imported, ``LookupError`` for an unknown ``encoding``.
    ``records()`` then yields every record after the header, readable or not;
    ``parse()`` turns one into a ``ContactRow``.
    """

    def __init__(self, source: BinaryIO, encoding: str) -> None:
        self.encoding = encoding
        self._counter = _ByteCounter(source)
        # surrogateescape: an undecodable byte costs its own row, not the file.
        text = io.TextIOWrapper(
            io.BufferedReader(self._counter),
            encoding=encoding,
            errors="surrogateescape",
            newline="",
        )
        self._lines = _PhysicalLines(text)
        self.layout, self._reader, self._header_row = _read_header(self._lines, encoding)

    @property
    def bytes_read(self) -> int:
        """The bytes read from the source so far, for progress."""
        return self._counter.bytes_read

    def records(self) -> Iterator[CsvRecord]:
        """Every record after the header, readable or not, with its position."""
        return _records(self._reader, self._lines, self._header_row)

    def parse(
        self, record: CsvRecord, own_addresses: frozenset[str]
    ) -> tuple[ContactRow, tuple[str, ...]]:
        """The record's contact data and its address warnings.

        Raises ``RowRejected`` (also for a record that could not be read),
        ``InvalidAddress`` or ``ContactError``.
        """
        if record.problem:
            raise RowRejected(record.problem)
        return _parse_row(record, self.layout, self.encoding, own_addresses)


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


def header_field(name: str) -> str | None:
    """The contact field a column named ``name`` holds (``HEADER_SYNONYMS``:
    case, ``_``, ``-`` and spaces do not matter), or None: a custom field."""
    return HEADER_SYNONYMS.get(_header_key(name))


def is_skipped_column(name: str) -> bool:
    """Whether an import skips a column named ``name``: the rejected-rows
    file's own columns and an export's read-only ones."""
    return name.lower() in _SKIPPED_COLUMNS


def custom_name_key(name: str) -> str:
    """Two custom fields whose names differ only in letter case are one
    field: an import refuses a file with both, a contact page an addition."""
    return name.casefold()


def custom_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` (trimmed) as a custom field's name, as
    words that follow the name ("is at most …"), or None. A blank name, a contact field's name
    (``header_field``) and a skipped column are the caller's to handle: an
    import reads them as something else, not as a wrong custom field."""
    if len(name) > NAME_MAX_LENGTH:
        return f"is at most {NAME_MAX_LENGTH} characters (got {len(name):,})"
    if "\x00" in name:
        return "contains a NUL character"
    return None


def custom_value_problem(value: str) -> str | None:
    """What is wrong with a custom field's ``value``, or None. A blank value
    is no value: the field is left out (``is_blank_custom_value``)."""
    if len(value) > CUSTOM_VALUE_MAX_LENGTH:
        return f"at most {CUSTOM_VALUE_MAX_LENGTH:,} characters (got {len(value):,})"
    if "\x00" in value:
        return "contains a NUL character"
    return None


def is_blank_custom_value(value: str) -> bool:
    """A custom value of only white space holds nothing and is not stored:
    templates read a missing field and an empty one alike."""
    return not value.strip()


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
        if is_skipped_column(name):
            ignored_columns.append(name)
            continue
        contact_field = header_field(name)
        meaning = contact_field or f"custom field {custom_name_key(name)!r}"
        if meaning in claimed:
            other = claimed[meaning]
            raise ImportFileError(
                f"columns {other + 1} ({header[other]!r}) and {index + 1} ({name!r}) "
                f"both hold {_FIELD_LABELS.get(meaning, meaning)}; keep one of them"
            )
        claimed[meaning] = index
        if contact_field:
            field_columns[contact_field] = index
        elif (problem := custom_name_problem(name)) is not None:
            raise ImportFileError(f"column {index + 1}: the custom field's name {problem}")
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


def _records(reader: Iterator[list[str]], lines: _PhysicalLines, row: int) -> Iterator[CsvRecord]:
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
        yield CsvRecord(RowPosition(row, first_line, max(first_line, lines.count)), cells, problem)


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
    """Raise ``RowRejected`` for cells no column can hold or no text can be."""
    width = len(layout.header)
    if len(cells) > width and any(cell.strip() for cell in cells[width:]):
        raise RowRejected(f"has {len(cells)} cells but the header has {width} columns")
    for index in layout.unnamed_columns:
        if index < len(cells) and cells[index].strip():
            raise RowRejected(f"column {index + 1} has a value but no header")
    joined = "".join(cells)
    if "\x00" in joined:
        index = next(i for i, cell in enumerate(cells) if "\x00" in cell)
        raise RowRejected(f"column {_column_name(layout, index)} contains a NUL character")
    if _undecodable_byte(joined) is not None:
        for index, cell in enumerate(cells):
            byte = _undecodable_byte(cell)
            if byte is not None:
                raise RowRejected(
                    f"not valid {_encoding_label(encoding)}: byte 0x{byte:02x} in column "
                    f"{_column_name(layout, index)}; re-run with --encoding "
                    "(for example cp1252 or latin-1)"
                )


def _parse_row(
    record: CsvRecord, layout: CsvLayout, encoding: str, own_addresses: frozenset[str]
) -> tuple[ContactRow, tuple[str, ...]]:
    """The row's contact data and its address warnings.

    Raises ``RowRejected``, ``InvalidAddress`` or ``ContactError``.
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
        raise RowRejected(f"email{shown}: {error}") from None
    raw_type = cell(columns.get("audience_type")).strip()
    contact_row = ContactRow(
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
        if is_blank_custom_value(value):
            continue
        problem = custom_value_problem(value)
        if problem is not None:
            raise RowRejected(f"{_shorten(key)}: {problem}")
        values[key] = value
    return values


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
