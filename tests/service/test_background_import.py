"""Background imports (``app.services.background_import``): stored at
upload, imported in committed batches with their progress, resumed after a
runner died, the stored file deleted at the end; on both databases."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.clock import FixedClock
from app.models import Contact, TargetList, TargetListMember
from app.models.imports import (
    ContactImport,
    ContactImportAddress,
    ContactImportProblem,
    ImportProblemKind,
    ImportState,
)
from app.services.background_import import (
    LEASE,
    ORPHAN_AGE,
    ImportRequest,
    ImportSettings,
    claim_next_import,
    delete_orphan_files,
    imports_folder,
    queue_import,
    run_claimed_import,
    run_pending_imports,
)
from app.services.import_report import UploadError

MB = 1024 * 1024


class RunnerKilled(BaseException):
    """Stands for the runner process dying between two batches: nothing of
    the import's own code runs after it (a BaseException, like SystemExit)."""


def people(count: int, *, bad_rows: tuple[int, ...] = (), extra: str = "") -> bytes:
    """A CSV of ``count`` data rows; the rows numbered in ``bad_rows``
    (1-based data rows) have an invalid address."""
    lines = ["email,first name"]
    for number in range(1, count + 1):
        address = f"not an address {number}" if number in bad_rows else f"p{number}@example.com"
        lines.append(f"{address},Person {number}{extra}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def folder(app: Flask) -> Path:
    return imports_folder(app.instance_path)


def settings_for(folder: Path, clock: FixedClock, runner: str = "runner-1") -> ImportSettings:
    return ImportSettings(
        folder=folder, runner=runner, clock=clock, own_addresses=frozenset(), batch_size=3
    )


def queue(
    session: Session, folder: Path, clock: FixedClock, data: bytes, **choices: object
) -> ContactImport:
    request = ImportRequest(
        file_name=str(choices.get("file_name", "people.csv")),
        list_name=str(choices.get("list_name", "Big list")),
        update=bool(choices.get("update", False)),
        default_type=None,
        encoding=str(choices.get("encoding", "detect")),
    )
    return queue_import(
        session, io.BytesIO(data), request, folder=folder, max_bytes=10 * MB, clock=clock
    )


def kill_after(batches: int) -> Callable[[int], None]:
    seen = []

    def on_progress(bytes_read: int) -> None:
        seen.append(bytes_read)
        if len(seen) == batches:
            raise RunnerKilled

    return on_progress


def problems(session: Session, import_id: int, kind: ImportProblemKind) -> list[int]:
    return list(
        session.scalars(
            select(ContactImportProblem.row)
            .where(ContactImportProblem.import_id == import_id, ContactImportProblem.kind == kind)
            .order_by(ContactImportProblem.id)
        )
    )


def test_an_upload_is_stored_under_a_random_name_and_waits(
    session: Session, folder: Path, clock: FixedClock
) -> None:
    data = people(5)
    record = queue(session, folder, clock, data, file_name="../../etc/evil name.csv")
    assert (record.state, record.background, record.file_size) == (
        ImportState.PENDING,
        True,
        len(data),
    )
    stored = folder / record.stored_file
    assert stored.read_bytes() == data
    assert "evil" not in record.stored_file and record.stored_file.endswith(".csv")
    assert [path.name for path in folder.iterdir()] == [record.stored_file]
    # Nothing is imported (nor the list created) before the runner's turn.
    assert session.scalar(select(func.count()).select_from(Contact)) == 0
    assert session.scalar(select(func.count()).select_from(TargetList)) == 0


@pytest.mark.parametrize(
    ("data", "choices", "field", "message"),
    [
        (b"", {}, "file", "the file is empty"),
        (b"PK\x03\x04" + b"\x00" * 100, {}, "file", "Excel workbook (.xlsx)"),
        (b"email\nann@example.com\x00\x00\n", {}, "file", "binary data"),
        (b"name,company\nAnn,Acme\n", {}, "file", "no email column"),
        (people(2), {"list_name": " "}, "list_name", "must not be empty"),
        (people(2), {"encoding": "rot13"}, "encoding", "choose one of"),
    ],
)
def test_an_upload_that_cannot_be_imported_stores_nothing(
    session: Session,
    folder: Path,
    clock: FixedClock,
    data: bytes,
    choices: dict[str, object],
    field: str,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        queue(session, folder, clock, data, **choices)
    error = raised.value
    assert message in str(error)
    assert getattr(error, "field", field) == field
    assert list(folder.iterdir()) == []
    assert session.scalar(select(func.count()).select_from(ContactImport)) == 0


def test_an_upload_over_the_maximum_is_refused(
    session: Session, folder: Path, clock: FixedClock
) -> None:
    request = ImportRequest("big.csv", "Big", False, None, "detect")
    with pytest.raises(UploadError, match=re.escape("sluice contacts import FILE.csv")):
        queue_import(
            session, io.BytesIO(people(100)), request, folder=folder, max_bytes=100, clock=clock
        )
    assert list(folder.iterdir()) == []


def test_an_import_runs_in_committed_batches_resumes_after_a_kill_and_deletes_its_file(
    session: Session, folder: Path, clock: FixedClock
) -> None:
    # 20 rows, two of them bad (one before the kill, one after); batches of
    # 3 valid rows, the runner dies after the second committed batch.
    data = people(20, bad_rows=(2, 17)) + b"p5@example.com,Again\n"
    record = queue(session, folder, clock, data)
    import_id = record.id
    claimed = claim_next_import(session, "runner-1", clock)
    assert claimed is not None and claimed.id == import_id
    with pytest.raises(RunnerKilled):
        run_claimed_import(session, claimed, settings_for(folder, clock), on_progress=kill_after(2))

    # What the two batches committed: 7 records (6 valid, 1 rejected), the
    # progress through the file, the rejected row with them.
    session.expire_all()
    stopped = session.get(ContactImport, import_id)
    assert stopped is not None
    assert (stopped.state, stopped.records_done, stopped.rows_total) == (ImportState.RUNNING, 7, 7)
    assert (stopped.rows_created, stopped.rows_rejected) == (6, 1)
    assert 0 < stopped.bytes_done <= len(data)
    assert stopped.locked_by == "runner-1"
    assert session.scalar(select(func.count()).select_from(Contact)) == 6
    assert problems(session, import_id, ImportProblemKind.REJECTED) == [3]
    assert (folder / stopped.stored_file).exists()

    # Its lease holds: nobody else takes it yet.
    assert claim_next_import(session, "runner-2", clock) is None
    clock.advance(LEASE + timedelta(seconds=1))
    summary = run_pending_imports(session, settings_for(folder, clock, "runner-2"))

    assert [done.id for done in summary.done] == [import_id] and summary.failed == []
    session.expire_all()
    done = session.get(ContactImport, import_id)
    assert done is not None
    assert done.state == ImportState.DONE and done.finished_at == clock.now()
    # Every row counted exactly once, as an uninterrupted import would.
    assert (done.rows_total, done.rows_created, done.rows_merged, done.rows_rejected) == (
        21,
        18,
        1,
        2,
    )
    assert done.rows_total == (
        done.rows_created
        + done.rows_updated
        + done.rows_unchanged
        + done.rows_merged
        + done.rows_rejected
    )
    assert done.bytes_done == done.file_size == len(data)
    assert problems(session, import_id, ImportProblemKind.REJECTED) == [3, 18]
    assert session.scalar(select(func.count()).select_from(Contact)) == 18
    assert session.scalar(select(func.count()).select_from(TargetListMember)) == 18
    # The merge of p5 (met before the kill) was recognised after the resume.
    assert session.scalar(select(Contact.first_name).where(Contact.email == "p5@example.com")) == (
        "Again"
    )
    # The end: the file and the address log gone, the lease released.
    assert (done.stored_file, done.locked_by) == ("", None)
    assert list(folder.iterdir()) == []
    assert session.scalar(select(func.count()).select_from(ContactImportAddress)) == 0


def test_detect_reads_the_whole_file(session: Session, folder: Path, clock: FixedClock) -> None:
    # Only the last row, past the first 64 KiB, shows the file is not UTF-8.
    data = people(3000) + "m@example.com,Müller\n".encode("cp1252")
    assert len(data) > 64 * 1024
    record = queue(session, folder, clock, data)
    run_pending_imports(session, settings_for(folder, clock))
    session.expire_all()
    assert session.get(ContactImport, record.id).encoding == "cp1252"  # type: ignore[union-attr]
    assert session.scalar(select(Contact.first_name).where(Contact.email == "m@example.com")) == (
        "Müller"
    )


def test_an_import_whose_file_is_gone_fails_and_says_so(
    session: Session, folder: Path, clock: FixedClock
) -> None:
    record = queue(session, folder, clock, people(3))
    (folder / record.stored_file).unlink()
    summary = run_pending_imports(session, settings_for(folder, clock))
    assert [failed.id for failed in summary.failed] == [record.id]
    session.expire_all()
    failed = session.get(ContactImport, record.id)
    assert failed is not None
    assert (failed.state, failed.stored_file) == (ImportState.FAILED, "")
    assert "the stored file is gone" in failed.error
    assert summary.describe() == (
        f"import {record.id} failed: the stored file is gone; upload it again"
    )


def test_left_over_files_are_deleted_after_an_hour(
    session: Session, folder: Path, clock: FixedClock
) -> None:
    waiting = queue(session, folder, clock, people(2))
    left_over = folder / "0123456789abcdef.csv"
    left_over.write_bytes(b"email\n")
    old = (clock.now() - ORPHAN_AGE - timedelta(minutes=1)).timestamp()
    for path in folder.iterdir():
        os.utime(path, (old, old))
    assert delete_orphan_files(session, folder, clock) == 1
    assert [path.name for path in folder.iterdir()] == [waiting.stored_file]
