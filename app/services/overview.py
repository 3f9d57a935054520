"""Counts shown on the dashboard's "Your data".

Rule: counting a big table costs a pass over it (a million contacts took
150 ms on PostgreSQL, every time the dashboard loads), so on PostgreSQL a
table the planner's statistics put at ``EXACT_COUNT_LIMIT`` rows or more is
shown with that estimate (``pg_class.reltuples``, refreshed by autovacuum's
ANALYZE) and marked approximate; smaller tables, tables never analysed and
SQLite are counted exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, TargetList

EXACT_COUNT_LIMIT = 100_000


@dataclass(frozen=True)
class Overview:
    database: str
    contacts: int
    target_lists: int
    campaigns: int
    contacts_approximate: bool = False


def _estimate(session: Session, table: str) -> int | None:
    """The planner's row estimate of ``table`` (PostgreSQL), None when unknown."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    estimate = session.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)"),
        {"table": table},
    )
    # -1: never vacuumed or analysed (PostgreSQL 14+).
    return None if estimate is None or estimate < 0 else int(estimate)


def database_overview(session: Session, exact_limit: int = EXACT_COUNT_LIMIT) -> Overview:
    def count(model: type[Contact] | type[TargetList] | type[Campaign]) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    estimate = _estimate(session, Contact.__tablename__)
    approximate = estimate is not None and estimate >= exact_limit
    return Overview(
        database=session.get_bind().dialect.name,
        contacts=estimate if approximate and estimate is not None else count(Contact),
        target_lists=count(TargetList),
        campaigns=count(Campaign),
        contacts_approximate=approximate,
    )
