"""Contact imports: a history of CSV imports and the per-import address log
that finds duplicates within one file without holding the file in memory."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.contacts import AUDIENCE_TYPE_MAX_LENGTH, EMAIL_MAX_LENGTH, str_enum
from app.models.queue import RUNNER_ID_MAX_LENGTH


class ImportState(enum.StrEnum):
    """Where an import is. In-request and command-line imports are
    ``running`` until they finish; a background import starts ``pending``
    (its file stored, waiting for the runner's ``contact-import`` job)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # a background import that stopped; ``error`` says why


class ContactImport(Base):
    """One run of a CSV import: what was imported where, when, with what result.

    The counts are written with every committed batch, so an import that
    stopped midway (``finished_at`` still empty) shows how far it got.
    A background import (``background``, migration 0018) also records its
    stored file, its progress through it (``records_done`` is where a
    resumed run goes on) and the lease of the runner importing it.
    """

    __tablename__ = "contact_imports"
    __table_args__ = (Index("ix_contact_imports_background_state", "background", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    file_name: Mapped[str] = mapped_column(String(500), default="")
    target_list_id: Mapped[int | None] = mapped_column(
        ForeignKey("target_lists.id", ondelete="SET NULL")
    )
    # Kept as text as well: the history stays readable after the list is deleted.
    list_name: Mapped[str] = mapped_column(String(200))
    update_existing: Mapped[bool] = mapped_column(Boolean, default=False)
    default_type: Mapped[str] = mapped_column(String(AUDIENCE_TYPE_MAX_LENGTH), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_created: Mapped[int] = mapped_column(Integer, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rows_merged: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    warning_count: Mapped[int] = mapped_column(Integer, default=0)
    # The file's header and delimiter, for the rejected-rows download of an
    # import started in the browser (migration 0013; None for others).
    csv_header: Mapped[list[str] | None] = mapped_column(JSON)
    csv_delimiter: Mapped[str] = mapped_column(String(1), default=",", server_default=",")
    # Background imports (migration 0018; app.services.background_import).
    state: Mapped[ImportState] = mapped_column(
        str_enum(ImportState, 10), default=ImportState.DONE, server_default="done"
    )
    background: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The file's name in the instance's imports folder (never the user's
    # file name); "" once deleted, when the import ended.
    stored_file: Mapped[str] = mapped_column(String(100), default="", server_default="")
    # As chosen ("detect" while pending), then the codec the file is read with.
    encoding: Mapped[str] = mapped_column(String(50), default="", server_default="")
    file_size: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Records (rows after the header, blank ones too) read and committed.
    records_done: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_by: Mapped[str | None] = mapped_column(String(RUNNER_ID_MAX_LENGTH))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str] = mapped_column(Text, default="", server_default="")

    @property
    def in_progress(self) -> bool:
        """A background import still waiting or being imported."""
        return self.background and self.state in (ImportState.PENDING, ImportState.RUNNING)


class ContactImportAddress(Base):
    """An address already met in a running import (one row per address).

    Lets a later row of the same file find the contact an earlier batch
    created or matched, without a Python set that would grow with the file.
    The rows are deleted when the import ends. ``contact_id`` deliberately has
    no foreign key: the importer checks the contact still exists.
    """

    __tablename__ = "contact_import_addresses"

    import_id: Mapped[int] = mapped_column(
        ForeignKey("contact_imports.id", ondelete="CASCADE"), primary_key=True
    )
    email_lower: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), primary_key=True)
    contact_id: Mapped[int] = mapped_column(Integer)
    # True when this import created the contact: later rows may then change
    # it even without --update.
    created: Mapped[bool] = mapped_column(Boolean)


class ImportProblemKind(enum.StrEnum):
    REJECTED = "rejected"
    WARNING = "warning"


class ContactImportProblem(Base):
    """A rejected row or a warning of an import started in the browser, kept
    for its report page and the rejected-rows download
    (``app.services.import_report``; migration 0013).

    ``cells`` holds a rejected row's cells as read, so the download is the
    same file the command line writes; ``field`` is the column the problem
    is about ("" when it is about the whole row).
    """

    __tablename__ = "contact_import_problems"
    __table_args__ = (
        Index("ix_contact_import_problems_import_id_kind_id", "import_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("contact_imports.id", ondelete="CASCADE"))
    kind: Mapped[ImportProblemKind] = mapped_column(str_enum(ImportProblemKind, 10))
    row: Mapped[int] = mapped_column(Integer)
    position: Mapped[str] = mapped_column(String(100))
    field: Mapped[str] = mapped_column(String(200), default="")
    message: Mapped[str] = mapped_column(Text)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), default="")
    cells: Mapped[list[str]] = mapped_column(JSON, default=list)
