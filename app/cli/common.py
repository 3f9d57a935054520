"""What every ``sluice`` command shares."""

from __future__ import annotations

import logging
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


def console_logging(line_format: str) -> None:
    """INFO and above to the console, for the long-running commands."""
    logging.basicConfig(level=logging.INFO, format=line_format)
    # Every job run is recorded (`sluice jobs`, the jobs page); APScheduler's
    # own two lines a run (the contact-import job runs every 10 s) would
    # drown the console. Its warnings and errors still show.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
