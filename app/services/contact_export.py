"""CSV export of contacts, and the CSV-injection rule every CSV Sluice writes
follows.

Rules:
- a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
  return is prefixed with ``'`` so a spreadsheet shows it as text instead of
  running it as a formula (OWASP "CSV Injection"); the stored value is never
  changed, only what is written;
- a value that already starts with quotes and then such a character gets
  one more quote, and the import removes exactly one (``'=…`` → ``=…``,
  ``''=…`` → ``'=…``), so a file exported by Sluice imports back to the same
  values;
- the export streams rows from the database in batches, so memory stays flat
  for any number of contacts;
- columns: the fixed ``EXPORT_COLUMNS``, then every custom-field key in use
  (sorted), each in its own column;
- contacts whose address was erased (``email`` is empty) are not exported:
  there is nothing left to send to or to re-import.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TextIO, TypeVarTuple

from sqlalchemy import Select, func, select, true
from sqlalchemy.orm import Session

from app.models import Contact, TargetList, TargetListMember

# OWASP CSV injection: characters a spreadsheet treats as the start of a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_ESCAPE = "'"

# Columns that show state an import never sets (the opt-out above all, which
# only the contact or an operator changes): the importer skips them, so an
# exported file imports back without turning them into custom fields.
EXPORT_READ_ONLY_COLUMNS = (
    "email_status",
    "opted_out",
    "opted_out_at",
    "opt_out_source",
    "created_at",
)
EXPORT_COLUMNS = ("email", "first_name", "last_name", "company", "type", *EXPORT_READ_ONLY_COLUMNS)
EXPORT_BATCH_SIZE = 1000

_Columns = TypeVarTuple("_Columns")


def _guards_formula(cell: str) -> bool:
    # Quotes already in front count too, so that a value that itself starts
    # with "'=" gets one more and comes back unchanged from unescape_formula.
    return cell.lstrip(FORMULA_ESCAPE).startswith(FORMULA_TRIGGERS)


def escape_formula(cell: str) -> str:
    """The cell as it must be written to a CSV file a spreadsheet may open."""
    return FORMULA_ESCAPE + cell if _guards_formula(cell) else cell


def unescape_formula(cell: str) -> str:
    """Undo ``escape_formula``: drop one ``'`` in front of a formula character."""
    if cell.startswith(FORMULA_ESCAPE) and _guards_formula(cell):
        return cell[1:]
    return cell


def safe_csv_row(cells: Iterable[str]) -> list[str]:
    return [escape_formula(cell) for cell in cells]


def find_target_list(session: Session, list_name: str) -> TargetList:
    """The target list called ``list_name``; ``LookupError`` when there is none."""
    target_list = session.scalar(select(TargetList).where(TargetList.name == list_name.strip()))
    if target_list is None:
        raise LookupError(f"no target list named {list_name.strip()!r}")
    return target_list


def _with_list(statement: Select[*_Columns], target_list_id: int | None) -> Select[*_Columns]:
    if target_list_id is None:
        return statement
    return statement.join(TargetListMember, TargetListMember.contact_id == Contact.id).where(
        TargetListMember.target_list_id == target_list_id
    )


def custom_field_keys(session: Session, target_list_id: int | None = None) -> list[str]:
    """Every custom-field key used by the exported contacts, sorted.

    Computed in the database (SQLite ``json_each``, PostgreSQL
    ``json_object_keys``) so no contact is loaded to find them.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        key = func.json_object_keys(Contact.custom_fields).label("key")
        # json_object_keys fails on a JSON value that is not an object.
        statement = select(key).where(func.json_typeof(Contact.custom_fields) == "object")
    elif dialect == "sqlite":
        entries = func.json_each(Contact.custom_fields).table_valued("key", joins_implicitly=True)
        statement = (
            select(entries.c.key)
            .select_from(Contact)
            .join(entries, true())
            # json_each on a scalar yields one row whose key is NULL.
            .where(entries.c.key.is_not(None))
        )
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(f"custom_field_keys does not support {dialect}")
    statement = _with_list(statement.where(Contact.email.is_not(None)), target_list_id)
    keys = session.scalars(statement.distinct()).all()
    return sorted(str(key) for key in keys)


def _timestamp(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _custom_cell(value: Any) -> str:
    """Strings as they are; other JSON values (from other entry paths) as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _contact_cells(row: Any, keys: Sequence[str]) -> list[str]:
    custom = row.custom_fields if isinstance(row.custom_fields, dict) else {}
    cells = [
        row.email,
        row.first_name,
        row.last_name,
        row.company,
        row.audience_type,
        row.email_status.value,
        "true" if row.opted_out else "false",
        _timestamp(row.opted_out_at),
        row.opt_out_source,
        _timestamp(row.created_at),
    ]
    cells.extend(_custom_cell(custom.get(key)) for key in keys)
    return cells


def export_contacts(
    session: Session,
    out: TextIO,
    *,
    list_name: str | None = None,
    batch_size: int = EXPORT_BATCH_SIZE,
) -> int:
    """Write contacts (all, or the members of ``list_name``) to ``out`` as CSV.

    ``out`` must be opened with ``newline=""``. Returns the number of contacts
    written. Raises ``LookupError`` when ``list_name`` names no list.
    """
    target_list_id = find_target_list(session, list_name).id if list_name is not None else None
    keys = custom_field_keys(session, target_list_id)
    writer = csv.writer(out)
    writer.writerow(safe_csv_row([*EXPORT_COLUMNS, *keys]))
    statement = select(
        Contact.email,
        Contact.first_name,
        Contact.last_name,
        Contact.company,
        Contact.audience_type,
        Contact.email_status,
        Contact.opted_out,
        Contact.opted_out_at,
        Contact.opt_out_source,
        Contact.created_at,
        Contact.custom_fields,
    ).where(Contact.email.is_not(None))
    statement = _with_list(statement, target_list_id).order_by(Contact.id)
    # yield_per streams (a server-side cursor on PostgreSQL) instead of
    # fetching every contact at once.
    rows = session.execute(statement.execution_options(yield_per=batch_size))
    written = 0
    for row in rows:
        writer.writerow(safe_csv_row(_contact_cells(row, keys)))
        written += 1
    return written
