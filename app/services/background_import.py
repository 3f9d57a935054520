"""CSV imports too big to run while the request waits: stored at upload,
imported by the runner's ``contact-import`` job (``jobs/contact_import.py``)
with the same rules and the same report as an import in the request
(``app.services.import_report``).

Rules:

- **Which path.** An upload up to the in-request limit
  (``import_inline_max_kilobytes``) is imported while the request waits, so
  its report shows at once; a bigger one, up to ``import_max_megabytes``,
  comes here. Over the maximum: refused, pointing at ``sluice contacts
  import``.
- **Checked at upload.** Empty, binary (a workbook, a PDF, NUL bytes), a bad
  list name, type or encoding, and a header the import would refuse (read
  with the encoding detected on the file's first 64 KiB) are refused on the
  form; nothing is stored then.
- **Stored.** The upload is copied in 1 MiB chunks (never whole in memory)
  into the instance's ``imports`` folder under a random name
  (``<uuid>.csv``: never derived from the user's file name), and recorded as
  a ``pending`` import holding that name, the chosen encoding and the size.
- **One import at a time per runner, under a lease.** The job takes the
  oldest pending import (or a running one whose lease ran out: its runner
  died) by a conditional update, renews the lease (``LEASE``) with every
  committed batch and imports until none is left.
- **Resumed, not restarted.** Each batch commits its contacts, its report
  rows, the counts and the records read, together. A runner killed midway
  leaves the import ``running``; once its lease has run out the next run
  skips the records already committed and goes on, counting each row once
  (``contact_import.continue_import``): nothing is imported twice, nothing
  missed.
- **Encoding.** "detect" is decided when the job starts, over the whole
  file in one pass (``import_report.detect_stream_encoding``), and stored.
- **The end.** ``done``, or ``failed`` with the reason (a header the import
  refuses, the file gone, an unexpected error: its rows so far stay
  imported and counted); either way the stored file is deleted. Files that
  no pending or running import names (a crash between two steps) are
  deleted by the job after ``ORPHAN_AGE``.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Final

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.clock import Clock
from app.models.imports import ContactImport, ContactImportAddress, ImportState
from app.services.contact_csv import ContactCsvFile, ImportFileError
from app.services.contact_import import (
    DEFAULT_BATCH_SIZE,
    check_import_options,
    continue_import,
    get_or_create_list,
)
from app.services.import_report import (
    DETECT,
    ENCODING_VALUES,
    SNIFF_BYTES,
    ProblemRecorder,
    UploadError,
    check_upload_start,
    detect_stream_encoding,
    web_message,
)

log = logging.getLogger(__name__)

IMPORTS_FOLDER: Final = "imports"
COPY_CHUNK_BYTES: Final = 1024 * 1024
# Renewed with every committed batch (a second or so); this long without
# one, the runner is taken for dead and another resumes the import.
LEASE: Final = timedelta(minutes=5)
ORPHAN_AGE: Final = timedelta(hours=1)
MAX_ERROR_TEXT: Final = 2000
COMMAND_LINE_HINT: Final = (
    "import bigger files with the command line: sluice contacts import FILE.csv --list NAME"
)


def imports_folder(instance_path: str | Path) -> Path:
    """Where stored uploads wait for the job (created, owner-only)."""
    folder = Path(instance_path) / IMPORTS_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def upload_size(stream: IO[bytes]) -> int:
    """The size of an uploaded file's (seekable, spooled) stream."""
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    return size


def megabytes(size: int) -> str:
    """A file size as people read it: "512 KB", "4.2 MB", "200 MB"."""
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024)):,} KB" if size else "0 KB"
    return f"{size / (1024 * 1024):,.1f}".removesuffix(".0") + " MB"


# ---------------------------------------------------------------- at upload


@dataclass(frozen=True)
class ImportRequest:
    """The form's choices for an import."""

    file_name: str
    list_name: str
    update: bool
    default_type: str | None
    encoding: str


def queue_import(
    session: Session,
    stream: IO[bytes],
    request: ImportRequest,
    *,
    folder: Path,
    max_bytes: int,
    clock: Clock,
) -> ContactImport:
    """Store the upload in ``folder`` and record it as a pending import
    (committed). Raises ``UploadError``, ``ImportFileError`` or
    ``ContactError`` (the module's rules); nothing is stored then."""
    size = upload_size(stream)
    if size > max_bytes:
        raise UploadError(
            "file",
            f"the file is {megabytes(size)}; the browser imports files up to "
            f"{megabytes(max_bytes)}: {COMMAND_LINE_HINT}",
        )
    start = stream.read(SNIFF_BYTES)
    check_upload_start(start, size)
    if request.encoding not in ENCODING_VALUES:
        raise UploadError("encoding", "choose one of the encodings offered")
    list_name, default_type = check_import_options(request.list_name, request.default_type)
    path = _store(folder, start, stream)
    try:
        _check_header(path, request.encoding, start)
        record = ContactImport(
            file_name=request.file_name[:500],
            list_name=list_name,
            update_existing=request.update,
            default_type=default_type,
            started_at=clock.now(),
            state=ImportState.PENDING,
            background=True,
            stored_file=path.name,
            encoding=request.encoding,
            file_size=size,
        )
        session.add(record)
        session.commit()
    except BaseException:
        session.rollback()
        path.unlink(missing_ok=True)
        raise
    return record


def _store(folder: Path, start: bytes, stream: IO[bytes]) -> Path:
    """Copy the upload into ``folder`` under a new random name, chunk by chunk."""
    path = folder / f"{uuid.uuid4().hex}.csv"
    try:
        with path.open("xb") as target:
            path.chmod(0o600)
            target.write(start)
            shutil.copyfileobj(stream, target, COPY_CHUNK_BYTES)
    except OSError as error:
        path.unlink(missing_ok=True)
        log.error("could not store an upload in %s: %s", folder, error)
        raise UploadError(
            "file", f"the file could not be stored on the server ({error.strerror})"
        ) from None
    return path


def _check_header(path: Path, encoding: str, start: bytes) -> None:
    """Raise ``ImportFileError`` for a header the import would refuse."""
    codec = detect_stream_encoding([start], complete=False) if encoding == DETECT else encoding
    with path.open("rb") as source:
        ContactCsvFile(source, codec)


# ---------------------------------------------------------------- in the job


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Pending, or running under a lease that ran out (its runner died)."""
    return and_(
        ContactImport.background.is_(True),
        or_(
            ContactImport.state == ImportState.PENDING,
            and_(
                ContactImport.state == ImportState.RUNNING,
                or_(ContactImport.locked_until.is_(None), ContactImport.locked_until < now),
            ),
        ),
    )


def claim_next_import(session: Session, runner: str, clock: Clock) -> ContactImport | None:
    """Take the oldest claimable import for ``runner`` under a lease
    (committed), or None when there is none."""
    now = clock.now()
    candidates = session.scalars(
        select(ContactImport.id).where(_claimable(now)).order_by(ContactImport.id).limit(10)
    ).all()
    for import_id in candidates:
        # Conditional: of two runners that saw the same import, one wins.
        claimed = session.execute(
            update(ContactImport)
            .where(ContactImport.id == import_id, _claimable(now))
            .values(state=ImportState.RUNNING, locked_by=runner, locked_until=now + LEASE),
            execution_options={"synchronize_session": False},
        )
        session.commit()
        if getattr(claimed, "rowcount", 0):
            return session.get(ContactImport, import_id, populate_existing=True)
    return None


@dataclass(frozen=True)
class ImportSettings:
    """What the job gives every background import."""

    folder: Path
    runner: str
    clock: Clock
    own_addresses: frozenset[str]
    batch_size: int = DEFAULT_BATCH_SIZE


def run_claimed_import(
    session: Session,
    record: ContactImport,
    settings: ImportSettings,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> ContactImport:
    """Import (or resume) ``record``, claimed by ``settings.runner``, to its
    end: ``done`` or ``failed``, its file deleted. An unexpected error is
    recorded on the import, then raised."""
    import_id = record.id
    path = settings.folder / record.stored_file
    try:
        _prepare(session, record, path, settings.clock)
        with path.open("rb") as source:
            csv_file = ContactCsvFile(source, record.encoding)
            recorder = ProblemRecorder(session, import_id)

            def before_commit() -> None:
                recorder.flush()
                _renew_lease(session, import_id, settings)

            continue_import(
                session,
                record,
                csv_file,
                clock=settings.clock,
                own_addresses=settings.own_addresses,
                on_rejected=recorder.rejected.append,
                on_warning=recorder.warnings.append,
                on_progress=on_progress,
                before_commit=before_commit,
                batch_size=settings.batch_size,
                resumable=True,
            )
    except ImportFileError as error:
        return _end(session, import_id, settings, error=web_message(str(error)))
    except FileNotFoundError:
        return _end(session, import_id, settings, error="the stored file is gone; upload it again")
    except Exception as error:
        _end(session, import_id, settings, error=f"stopped by an error: {error}")
        raise
    return _end(session, import_id, settings)


def _prepare(session: Session, record: ContactImport, path: Path, clock: Clock) -> None:
    """Decide "detect" over the whole file, and create the list at the
    start of the first run (again if it was deleted since)."""
    if record.encoding == DETECT:
        record.encoding = detect_stream_encoding(_chunks(path))
    if record.target_list_id is None:
        record.target_list_id = get_or_create_list(session, record.list_name, clock).id
    session.commit()


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(COPY_CHUNK_BYTES):
            yield chunk


def _renew_lease(session: Session, import_id: int, settings: ImportSettings) -> None:
    session.execute(
        update(ContactImport)
        .where(ContactImport.id == import_id, ContactImport.locked_by == settings.runner)
        .values(locked_until=settings.clock.now() + LEASE),
        execution_options={"synchronize_session": False},
    )


def _end(
    session: Session, import_id: int, settings: ImportSettings, *, error: str = ""
) -> ContactImport:
    """The import's end: failed with ``error`` (or done, as the last batch
    recorded), lease released; then its file deleted."""
    session.rollback()
    record = session.get(ContactImport, import_id, populate_existing=True)
    assert record is not None  # imports are never deleted
    if error:
        record.state = ImportState.FAILED
        record.error = error[:MAX_ERROR_TEXT]
        session.execute(
            delete(ContactImportAddress).where(ContactImportAddress.import_id == import_id)
        )
    stored, record.stored_file = record.stored_file, ""
    record.locked_by = record.locked_until = None
    session.commit()
    if stored:
        (settings.folder / stored).unlink(missing_ok=True)
    return record


@dataclass
class ImportRunSummary:
    """What one run of the job did."""

    done: list[ContactImport] = field(default_factory=list)
    failed: list[ContactImport] = field(default_factory=list)
    orphans_deleted: int = 0

    def describe(self) -> str:
        if not self.done and not self.failed:
            text = "no import waiting"
        else:
            parts = [
                f"import {record.id} done ({record.rows_total:,} rows)" for record in self.done
            ]
            parts += [f"import {record.id} failed: {record.error}" for record in self.failed]
            text = "; ".join(parts)
        if self.orphans_deleted:
            text += f"; {self.orphans_deleted} left-over file(s) deleted"
        return text


def run_pending_imports(session: Session, settings: ImportSettings) -> ImportRunSummary:
    """Import every claimable import, one after the other, then delete
    left-over files."""
    summary = ImportRunSummary()
    while (record := claim_next_import(session, settings.runner, settings.clock)) is not None:
        ended = run_claimed_import(session, record, settings)
        (summary.failed if ended.state == ImportState.FAILED else summary.done).append(ended)
    summary.orphans_deleted = delete_orphan_files(session, settings.folder, settings.clock)
    return summary


def delete_orphan_files(session: Session, folder: Path, clock: Clock) -> int:
    """Delete files of ``folder`` older than ``ORPHAN_AGE`` that no pending
    or running import names; returns how many."""
    in_use = set(
        session.scalars(
            select(ContactImport.stored_file).where(
                ContactImport.state.in_((ImportState.PENDING, ImportState.RUNNING))
            )
        )
    )
    cutoff = (clock.now() - ORPHAN_AGE).timestamp()
    deleted = 0
    for path in folder.glob("*.csv"):
        if path.name not in in_use and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted


# ---------------------------------------------------------------- the page


def active_imports(session: Session) -> list[ContactImport]:
    """Background imports waiting or running, oldest first."""
    return list(
        session.scalars(
            select(ContactImport)
            .where(
                ContactImport.background.is_(True),
                ContactImport.state.in_((ImportState.PENDING, ImportState.RUNNING)),
            )
            .order_by(ContactImport.id)
        )
    )


def progress_percent(record: ContactImport) -> int:
    if not record.file_size:
        return 0
    return min(100, record.bytes_done * 100 // record.file_size)


def describe_progress(record: ContactImport) -> str:
    """How far a background import is, as the page and its updates say it."""
    if record.state == ImportState.PENDING:
        return f"waiting for the runner ({megabytes(record.file_size)})"
    return (
        f"{record.rows_total:,} rows imported; {megabytes(record.bytes_done)} of "
        f"{megabytes(record.file_size)} read ({progress_percent(record)} %)"
    )
