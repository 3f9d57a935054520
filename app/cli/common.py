"""What every ``sluice`` command shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from app.extensions import current_session


@contextmanager
def unit_of_work(*refusals: type[Exception]) -> Iterator[Session]:
    """One command's database work: committed when the block succeeds; when a
    service refuses with one of ``refusals``, rolled back and reported as the
    refusal's message (exit status 1, no traceback)."""
    session = current_session()
    try:
        yield session
    except refusals as error:
        session.rollback()
        raise click.ClickException(str(error)) from None
    session.commit()
