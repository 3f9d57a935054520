"""Demo data for a first start."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.clock import Clock


def load_demo_data(session: Session, clock: Clock, only_if_empty: bool = False) -> str:
    raise NotImplementedError
