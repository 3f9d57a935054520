"""``sluice contacts …``: import, export, change-address, opt-out, opt-in.

The commands own files and printing; the rules live in
``app.services.contact_import``, ``contact_csv``, ``contact_export`` and
``contacts``.
"""

from __future__ import annotations

import codecs
import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import click
from flask import current_app
from flask.cli import with_appcontext
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from app import app_settings
from app.clock import SystemClock
from app.extensions import current_session
from app.services.addresses import InvalidAddress, own_sending_addresses
from app.services.contact_csv import (
    ImportFileError,
    RejectedRow,
    RejectedRowsWriter,
    RowWarning,
)
from app.services.contact_export import export_contacts, find_target_list
from app.services.contact_import import ImportSummary, import_contacts
from app.services.contacts import (
    ContactError,
    change_address,
    clean_audience_type,
    clean_name,
    find_contact,
    set_opt_out,
)

# Beyond this many lines of rejected rows (and, separately, of warnings) the
# terminal only gets a count: the rejected-rows file has them all.
TERMINAL_LINES_MAX = 100
# Files Sluice writes carry a BOM so spreadsheet programs read them as UTF-8;
# surrogateescape writes undecodable input bytes back exactly as they came.
CSV_FILE_ENCODING = "utf-8-sig"


@click.group("contacts")
def contacts_group() -> None:
    """Import, export and opt contacts out of or into mass email."""


def rejected_rows_path(source: Path) -> Path:
    """``people.csv`` → ``people.rejected.csv``, beside the input."""
    return source.with_name(f"{source.stem}.rejected.csv")


def _printable(text: str) -> str:
    """Undecodable input bytes (lone surrogates) as escapes a terminal can show."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class _RowReporter:
    """Prints rejected rows and warnings as they come (up to
    ``TERMINAL_LINES_MAX`` of each) and streams every rejected row to the
    rejected-rows file, opened at the first one."""

    def __init__(self, console: Console, rejected_file: Path) -> None:
        self.console = console
        self.rejected_file = rejected_file
        self._file: TextIO | None = None
        self._writer: RejectedRowsWriter | None = None
        self.rejected = 0
        self.warnings = 0

    def on_rejected(self, rejected: RejectedRow) -> None:
        if self._writer is None:
            self._file = self.rejected_file.open(
                "w", encoding=CSV_FILE_ENCODING, errors="surrogateescape", newline=""
            )
            self._writer = RejectedRowsWriter(self._file)
        self._writer.write(rejected)
        self.rejected += 1
        if self.rejected <= TERMINAL_LINES_MAX:
            self._print(f"{rejected.position}: {rejected.reason}")

    def on_warning(self, warning: RowWarning) -> None:
        self.warnings += 1
        if self.warnings <= TERMINAL_LINES_MAX:
            self._print(f"{warning.position}: warning: {warning.email}: {warning.message}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def print_overflow(self) -> None:
        if self.rejected > TERMINAL_LINES_MAX:
            hidden = self.rejected - TERMINAL_LINES_MAX
            self._print(f"… and {hidden} more rejected rows, see {self.rejected_file}")
        if self.warnings > TERMINAL_LINES_MAX:
            self._print(f"… and {self.warnings - TERMINAL_LINES_MAX} more warnings")

    def _print(self, text: str) -> None:
        self.console.print(_printable(text), markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _progress_bar(console: Console, total_bytes: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on bytes read; silent when stderr is not a terminal."""
    with Progress(
        TextColumn("Importing"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("import", total=total_bytes)
        yield lambda done: progress.update(task, completed=done)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _summary_text(summary: ImportSummary, source: Path) -> str:
    text = (
        f"Imported {source.name} into list {summary.list_name!r}: "
        f"{_count(summary.rows, 'row')}: {summary.created:,} created, "
        f"{summary.updated:,} updated, {summary.unchanged:,} unchanged, "
        f"{summary.merged:,} merged, {summary.rejected:,} rejected; "
        f"{_count(summary.warnings, 'warning')}."
    )
    if summary.blank_rows:
        text += f" Skipped {_count(summary.blank_rows, 'blank row')}."
    if summary.ignored_columns:
        names = ", ".join(summary.ignored_columns)
        text += f" Ignored columns an import never sets: {names}."
    return text


def _check_import_options(default_type: str | None, encoding: str) -> None:
    if default_type is not None:
        try:
            clean_audience_type(default_type)
        except ContactError as error:
            raise click.BadParameter(str(error), param_hint="--type") from None
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise click.BadParameter(
            f"unknown encoding {encoding!r}", param_hint="--encoding"
        ) from None


@contacts_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--list", "list_name", required=True, help="Target list (created if missing).")
@click.option("--update", is_flag=True, help="Overwrite existing contacts with non-empty cells.")
@click.option("--type", "default_type", help="Audience type for rows without one.")
@click.option(
    "--encoding",
    default="utf-8-sig",
    show_default=True,
    help="Text encoding of the file, e.g. cp1252 or latin-1 for older Excel files.",
)
@with_appcontext
def import_command(
    file: Path, list_name: str, update: bool, default_type: str | None, encoding: str
) -> None:
    """Import contacts from a CSV file into a target list.

    Columns map by header (email, first/last name, company, type; other
    columns become custom fields). Rejected rows are listed and written to
    FILE's name + .rejected.csv beside it; that file is removed when a later
    import of FILE rejects nothing.
    """
    _check_import_options(default_type, encoding)
    console = Console(stderr=True)
    reporter = _RowReporter(console, rejected_rows_path(file))
    session = current_session()
    own_addresses = own_sending_addresses(session, app_settings(current_app).bounce_address)
    try:
        with file.open("rb") as source, _progress_bar(console, file.stat().st_size) as advance:
            summary = import_contacts(
                session,
                source,
                list_name=list_name,
                update=update,
                default_type=default_type,
                clock=SystemClock(),
                own_addresses=own_addresses,
                encoding=encoding,
                source_name=file.name,
                on_rejected=reporter.on_rejected,
                on_warning=reporter.on_warning,
                on_progress=advance,
            )
    except (ImportFileError, ContactError) as error:
        raise click.ClickException(f"{file}: {error}; nothing was imported") from None
    finally:
        reporter.close()
    reporter.print_overflow()
    click.echo(_printable(_summary_text(summary, file)))
    _report_rejected_file(reporter)


def _report_rejected_file(reporter: _RowReporter) -> None:
    """Say where rejected rows went; remove a stale file from an earlier run
    so the file beside the input always describes the latest import."""
    path = reporter.rejected_file
    if reporter.rejected:
        click.echo(f"Rejected rows written to {path} (fix them there and import that file).")
    elif path.exists():
        path.unlink()
        click.echo(f"Removed {path} left by an earlier import: no rows were rejected this time.")


@contextmanager
def _stdout_csv() -> Iterator[TextIO]:
    """Standard output as UTF-8 text for the csv module, whatever the locale."""
    sys.stdout.flush()
    stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", write_through=True)
    try:
        yield stream
    finally:
        stream.flush()
        stream.detach()  # leave stdout itself open


@contacts_group.command("export")
@click.option("--list", "list_name", help="Export only this target list's members.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
@with_appcontext
def export_command(list_name: str | None, output: Path | None) -> None:
    """Export contacts as CSV (standard output by default)."""
    session = current_session()
    if list_name is not None:
        try:
            find_target_list(session, list_name)  # before an output file is created
        except LookupError as error:
            raise click.ClickException(str(error)) from None
    if output is None:
        with _stdout_csv() as out:
            count = export_contacts(session, out, list_name=list_name)
    else:
        with output.open("w", encoding=CSV_FILE_ENCODING, newline="") as out:
            count = export_contacts(session, out, list_name=list_name)
    click.echo(f"Exported {count} contacts to {output or 'standard output'}.", err=True)


@contacts_group.command("change-address")
@click.argument("address")
@click.argument("new_address")
@with_appcontext
def change_address_command(address: str, new_address: str) -> None:
    """Correct the contact at ADDRESS to NEW_ADDRESS (a typo, a moved mailbox).

    A new address lifts the "invalid" mark a hard bounce left on the old
    one. A mass email it missed can then be resent with `sluice queue resend`.
    """
    session = current_session()
    try:
        contact = find_contact(session, address)
    except InvalidAddress as error:
        raise click.ClickException(f"{address.strip()!r} is not a valid address: {error}") from None
    if contact is None:
        raise click.ClickException(f"no contact with address {address.strip()!r}")
    own_addresses = own_sending_addresses(session, app_settings(current_app).bounce_address)
    try:
        saved = change_address(session, contact, new_address, SystemClock(), own_addresses)
    except InvalidAddress as error:
        session.rollback()
        raise click.ClickException(
            f"{new_address.strip()!r} is not a valid address: {error}"
        ) from None
    except ContactError as error:
        session.rollback()
        raise click.ClickException(str(error)) from None
    session.commit()
    click.echo(f"{address.strip()} is now {saved.contact.email}.")
    for warning in saved.warnings:
        click.echo(f"Warning: {warning}", err=True)


def _change_opt_out(address: str, opted_out: bool, source: str) -> None:
    session = current_session()
    try:
        contact = set_opt_out(session, address, opted_out, source, SystemClock())
    except InvalidAddress as error:
        raise click.ClickException(f"{address.strip()!r} is not a valid address: {error}") from None
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    session.commit()
    if contact.opted_out and contact.opted_out_at is not None:
        click.echo(
            f"{contact.email} is opted out of mass email since "
            f"{contact.opted_out_at:%Y-%m-%d %H:%M} UTC (source: {contact.opt_out_source})."
        )
    else:
        click.echo(f"{contact.email} is opted in to mass email.")


@contacts_group.command("opt-out")
@click.argument("address")
@click.option("--source", default="cli", show_default=True, help="Recorded as the reason.")
@with_appcontext
def opt_out_command(address: str, source: str) -> None:
    """Opt ADDRESS out of mass email (transactional mail is not affected)."""
    try:
        source = clean_name("source", source)
    except ContactError as error:
        raise click.BadParameter(str(error), param_hint="--source") from None
    _change_opt_out(address, True, source or "cli")


@contacts_group.command("opt-in")
@click.argument("address")
@with_appcontext
def opt_in_command(address: str) -> None:
    """Opt ADDRESS back in to mass email."""
    _change_opt_out(address, False, "")
