"""CSV import of contacts into a target list.

The file and row rules are in ``app.services.contact_csv``, which reads the
file: a file that cannot be imported raises ``ImportFileError`` and imports
nothing; a bad row is rejected with its number and reason and the rest goes
on; blank rows are skipped and counted as ``blank_rows``. This module holds
what happens to the valid rows.

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
counts and, with every batch, the records read so far (``records_done``):
``continue_import`` on a stopped import skips those records and goes on with
the same counts and address log, so every row is still counted exactly once
(the background imports resume so: ``app.services.background_import``).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Final

from sqlalchemy import (
    JSON,
    Boolean,
    Integer,
    Subquery,
    Text,
    delete,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from app.clock import Clock
from app.models import Contact, TargetList, TargetListMember
from app.models.base import UTCDateTime
from app.models.imports import ContactImport, ContactImportAddress, ImportState
from app.services.addresses import InvalidAddress
from app.services.bulk_sql import insert_ignoring_conflicts, rows_as_table
from app.services.contact_csv import (
    ContactCsvFile,
    ContactRow,
    RejectedRow,
    RowRejected,
    RowWarning,
)
from app.services.contacts import ContactError, clean_audience_type, clean_name

DEFAULT_BATCH_SIZE: Final = 2000


@dataclass
class ImportSummary:
    """What an import did: its rows counted by outcome (see the contact rules)."""

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
    # Records read after the header (blank ones too) and bytes read, as of
    # the last batch: a resumed import skips that many records.
    records_read: int = 0
    bytes_read: int = 0


@dataclass(frozen=True)
class _Values:
    """The fields an import may change, as stored or as they will be."""

    first_name: str
    last_name: str
    company: str
    audience_type: str
    custom_fields: dict[str, Any]

    def merged(self, row: ContactRow, fallback_type: str = "") -> _Values:
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


# ---------------------------------------------------------------- the database


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
    source, params = rows_as_table(
        session, "new_contacts", _NEW_CONTACT_COLUMNS, [_new_contact_row(plan) for plan in plans]
    )
    rows = select(
        *source.c,
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
    ).where(true())  # SQLite: INSERT … SELECT needs a WHERE before ON CONFLICT
    statement = (
        insert_ignoring_conflicts(session, Contact)
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


def get_or_create_list(session: Session, list_name: str, clock: Clock) -> TargetList:
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
        before_commit: Callable[[], None] | None,
    ) -> None:
        self.session = session
        self.import_id = record.id
        self.target_list_id = record.target_list_id
        self.summary = summary
        self.update = update
        self.default_type = default_type
        self.clock = clock
        self.before_commit = before_commit

    def apply(self, rows: Sequence[ContactRow]) -> None:
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
        self._commit()

    def _commit(self) -> None:
        """Commit the batch with what the caller keeps beside it (the
        report's rows, a lease): both or neither."""
        if self.before_commit is not None:
            self.before_commit()
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
        return rows_as_table(self.session, "batch_keys", {"key": Text()}, [(key,) for key in keys])

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
        self, row: ContactRow, created_before: bool | None, stored: tuple[int, _Values] | None
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

    def _merge_duplicate(self, plan: _Plan, row: ContactRow) -> None:
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
        self._commit()

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
        met, params = rows_as_table(
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
        members, params = rows_as_table(
            self.session,
            "members",
            {"contact_id": Integer()},
            [(plan.contact_id,) for plan in plans],
        )
        rows = select(
            literal(self.target_list_id), members.c.contact_id, literal(now, UTCDateTime())
        )
        statement = insert_ignoring_conflicts(self.session, TargetListMember).from_select(
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
            "records_done": summary.records_read,
            "bytes_done": summary.bytes_read,
        }
        if finished:
            values["finished_at"] = self.clock.now()
            values["state"] = ImportState.DONE
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

    The rules are in this module's docstring and, for the file and its rows,
    in ``app.services.contact_csv``'s. ``on_rejected`` and
    ``on_warning`` are called as rows are read; ``on_progress`` with the bytes
    read so far after each committed batch. Commits after every batch.

    Raises ``ImportFileError`` for a file that cannot be imported at all, and
    ``ContactError`` for a bad ``list_name`` or ``default_type`` (both before
    anything is written). ``LookupError`` for an unknown ``encoding``.
    """
    list_name, default_type = check_import_options(list_name, default_type)
    codecs.lookup(encoding)
    csv_file = ContactCsvFile(source, encoding)
    record = start_import(
        session,
        clock,
        source_name=source_name,
        list_name=list_name,
        update=update,
        default_type=default_type,
    )
    return continue_import(
        session,
        record,
        csv_file,
        clock=clock,
        own_addresses=own_addresses,
        on_rejected=on_rejected,
        on_warning=on_warning,
        on_progress=on_progress,
        batch_size=batch_size,
    )


def check_import_options(list_name: str, default_type: str | None) -> tuple[str, str]:
    """The list name and default type cleaned; ``ContactError`` when bad."""
    list_name = clean_name("list name", list_name)
    if not list_name:
        raise ContactError("list name: must not be empty")
    return list_name, clean_audience_type(default_type) if default_type else ""


def continue_import(
    session: Session,
    record: ContactImport,
    csv_file: ContactCsvFile,
    *,
    clock: Clock,
    own_addresses: frozenset[str],
    on_rejected: Callable[[RejectedRow], None],
    on_warning: Callable[[RowWarning], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    before_commit: Callable[[], None] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    resumable: bool = False,
) -> ImportSummary:
    """Import the records of ``csv_file`` after the ``record.records_done``
    already committed, into the import's list, counting on from its counts.

    ``before_commit`` is called before each batch's commit (and the last),
    for what must be committed with it. On an ``Exception`` the address log
    is forgotten (the import cannot go on); a ``resumable`` import keeps it
    when stopped otherwise (the process told to stop), so it can resume.
    """
    summary = _summary_of(record, csv_file)
    writer = _BatchWriter(
        session,
        record,
        summary,
        update=record.update_existing,
        default_type=record.default_type,
        clock=clock,
        before_commit=before_commit,
    )
    try:
        for batch in _valid_row_batches(
            csv_file,
            summary,
            own_addresses=own_addresses,
            batch_size=batch_size,
            on_rejected=on_rejected,
            on_warning=on_warning,
        ):
            writer.apply(batch)
            if on_progress is not None:
                on_progress(csv_file.bytes_read)
        summary.bytes_read = csv_file.bytes_read
        writer.finish()
    except Exception:
        session.rollback()
        _forget_addresses(session, summary.import_id)
        raise
    except BaseException:
        session.rollback()
        if not resumable:
            _forget_addresses(session, summary.import_id)
        raise
    if on_progress is not None:
        on_progress(csv_file.bytes_read)
    return summary


def _summary_of(record: ContactImport, csv_file: ContactCsvFile) -> ImportSummary:
    """The summary as the import's record has it (zeros for a new import)."""
    return ImportSummary(
        list_name=record.list_name,
        import_id=record.id,
        rows=record.rows_total,
        created=record.rows_created,
        updated=record.rows_updated,
        unchanged=record.rows_unchanged,
        merged=record.rows_merged,
        rejected=record.rows_rejected,
        warnings=record.warning_count,
        ignored_columns=csv_file.layout.ignored_columns,
        records_read=record.records_done,
        bytes_read=record.bytes_done,
    )


def start_import(
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
        target_list_id=get_or_create_list(session, list_name, clock).id,
        list_name=list_name,
        update_existing=update,
        default_type=default_type,
        started_at=clock.now(),
        state=ImportState.RUNNING,
    )
    session.add(record)
    session.commit()
    return record


def _valid_row_batches(
    csv_file: ContactCsvFile,
    summary: ImportSummary,
    *,
    own_addresses: frozenset[str],
    batch_size: int,
    on_rejected: Callable[[RejectedRow], None],
    on_warning: Callable[[RowWarning], None] | None,
) -> Iterator[list[ContactRow]]:
    """Batches of valid rows; rejected rows and warnings are reported as met.

    The first ``summary.records_read`` records were imported by an earlier
    run: they are read past (that costs no database work) and not counted
    again. ``summary.records_read`` and ``bytes_read`` are up to date
    whenever a batch is handed out.
    """
    layout = csv_file.layout
    batch: list[ContactRow] = []
    already_read = summary.records_read
    for index, record in enumerate(csv_file.records()):
        if index < already_read:
            continue
        summary.records_read = index + 1
        if record.is_blank:
            summary.blank_rows += 1
            continue
        summary.rows += 1
        try:
            row, warnings = csv_file.parse(record, own_addresses)
        except (RowRejected, InvalidAddress, ContactError) as error:
            summary.rejected += 1
            on_rejected(RejectedRow(record.position, str(error), tuple(record.cells), layout))
            continue
        for message in warnings:
            summary.warnings += 1
            if on_warning is not None:
                on_warning(RowWarning(record.position, row.email, message))
        batch.append(row)
        if len(batch) >= batch_size:
            summary.bytes_read = csv_file.bytes_read
            yield batch
            batch = []
    if batch:
        summary.bytes_read = csv_file.bytes_read
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
