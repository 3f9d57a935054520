"""The job runner's records: one row per job run and one per runner process.

Written by ``app.services.job_runs`` only; read by ``sluice jobs`` and the
jobs page (SPEC §7: active, last run, result, next run, is a runner alive).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime
from app.models.contacts import str_enum
from app.models.queue import RUNNER_ID_MAX_LENGTH

JOB_ID_MAX_LENGTH = 50


class JobRunOutcome(enum.StrEnum):
    RUNNING = "running"  # started, not finished (or its runner died)
    OK = "ok"
    ERROR = "error"


class JobRun(Base):
    """One run of a scheduled job by one runner."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_id_started_at", "job_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(JOB_ID_MAX_LENGTH))
    runner_id: Mapped[str] = mapped_column(String(RUNNER_ID_MAX_LENGTH))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[JobRunOutcome] = mapped_column(
        str_enum(JobRunOutcome, 10), default=JobRunOutcome.RUNNING
    )
    # A one-line summary of what the run did ("sent 100, failed 2").
    result: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")


class Runner(Base):
    """A runner process (``sluice worker`` or ``sluice run``) and its
    heartbeat. ``schedule`` maps each job id it runs to its next run time
    (ISO 8601), refreshed with every heartbeat."""

    __tablename__ = "runners"

    id: Mapped[str] = mapped_column(String(RUNNER_ID_MAX_LENGTH), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    schedule: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
