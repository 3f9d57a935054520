"""Contact imports: a history of CSV imports and the per-import address log
that finds duplicates within one file without holding the file in memory."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.contacts import AUDIENCE_TYPE_MAX_LENGTH, EMAIL_MAX_LENGTH, str_enum


class ContactImport(Base):
    """One run of a CSV import: what was imported where, when, with what result.

    The counts are written with every committed batch, so an import that
    stopped midway (``finished_at`` still empty) shows how far it got.
    """

    __tablename__ = "contact_imports"

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
