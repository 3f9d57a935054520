"""Counts shown on the status page."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Campaign, Contact, TargetList


@dataclass(frozen=True)
class Overview:
    database: str
    contacts: int
    target_lists: int
    campaigns: int


def database_overview(session: Session) -> Overview:
    def count(model: type[Contact] | type[TargetList] | type[Campaign]) -> int:
        return session.scalar(select(func.count()).select_from(model)) or 0

    return Overview(
        database=session.get_bind().dialect.name,
        contacts=count(Contact),
        target_lists=count(TargetList),
        campaigns=count(Campaign),
    )
