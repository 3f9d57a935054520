"""``sluice suppression …``: list, add, remove and search the suppression
list. The rules live in ``app.services.suppression``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app.cli.common import unit_of_work
from app.clock import SystemClock
from app.models import SuppressionReason
from app.services import suppression
from app.services.addresses import InvalidAddress
from app.services.suppression import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    NotSuppressed,
    SuppressionError,
    SuppressionPage,
)

_PAGE_SIZE = click.IntRange(1, MAX_PAGE_SIZE)


@click.group("suppression")
def suppression_group() -> None:
    """The addresses no mass email may reach (hard bounces, complaints,
    repeated soft bounces, manual entries)."""


def _print_page(page: SuppressionPage, again: str) -> None:
    if not page.entries:
        click.echo("No suppressed addresses.")
        return
    for entry in page.entries:
        when = f"{entry.created_at:%Y-%m-%d %H:%M} UTC"
        click.echo(f"{entry.address}\t{entry.reason}\t{when}\t{entry.source}")
    if page.next_after is not None:
        click.echo(f"More: {again} --after {page.next_after}", err=True)


def _invalid(address: str, error: InvalidAddress) -> click.ClickException:
    shown = address.strip()
    if len(shown) > 80:
        shown = shown[:80] + "…"
    return click.ClickException(f"{shown!r} is not a valid address: {error}")


@suppression_group.command("list")
@click.option(
    "--reason",
    type=click.Choice([reason.value for reason in SuppressionReason]),
    help="Only this reason.",
)
@click.option("--after", help="Start after this address (the previous page's last).")
@click.option("--limit", type=_PAGE_SIZE, default=DEFAULT_PAGE_SIZE, show_default=True)
@with_appcontext
def list_command(reason: str | None, after: str | None, limit: int) -> None:
    """Suppressed addresses in address order, one page at a time."""
    with unit_of_work(SuppressionError) as session:
        page = suppression.listing(
            session,
            after=after,
            limit=limit,
            reason=None if reason is None else SuppressionReason(reason),
        )
    again = "sluice suppression list" + (f" --reason {reason}" if reason else "")
    _print_page(page, again)


@suppression_group.command("search")
@click.argument("query")
@click.option("--contains", is_flag=True, help="Match anywhere in the address (slower).")
@click.option("--after", help="Start after this address (the previous page's last).")
@click.option("--limit", type=_PAGE_SIZE, default=DEFAULT_PAGE_SIZE, show_default=True)
@with_appcontext
def search_command(query: str, contains: bool, after: str | None, limit: int) -> None:
    """Suppressed addresses starting with QUERY, at a domain (@example.com),
    or with --contains holding QUERY."""
    with unit_of_work(SuppressionError) as session:
        page = suppression.search(session, query, contains=contains, after=after, limit=limit)
    _print_page(page, f"sluice suppression search {query!r}" + (" --contains" if contains else ""))


@suppression_group.command("add")
@click.argument("address")
@click.option("--source", default="cli", show_default=True, help="Who or what asked for it.")
@with_appcontext
def add_command(address: str, source: str) -> None:
    """Suppress ADDRESS by hand (reason: manual)."""
    with unit_of_work(SuppressionError) as session:
        try:
            added = suppression.add(
                session, address, SuppressionReason.MANUAL, source, SystemClock()
            )
            entry = suppression.find(session, address)
        except InvalidAddress as error:
            raise _invalid(address, error) from None
    assert entry is not None
    if added:
        click.echo(f"{entry.address} is suppressed (manual, source: {entry.source}).")
    else:
        click.echo(
            f"{entry.address} was already suppressed since {entry.created_at:%Y-%m-%d %H:%M} UTC"
            f" ({entry.reason}, source: {entry.source}); nothing changed."
        )


@suppression_group.command("remove")
@click.argument("address")
@click.option("--by", "removed_by", required=True, help="Who lifts it (recorded).")
@click.option("--why", required=True, help="Why, e.g. the recipient fixed the mailbox (recorded).")
@with_appcontext
def remove_command(address: str, removed_by: str, why: str) -> None:
    """Lift the suppression of ADDRESS, recording who and why."""
    with unit_of_work(SuppressionError, NotSuppressed) as session:
        try:
            entry = suppression.remove(
                session, address, by=removed_by, why=why, clock=SystemClock()
            )
        except InvalidAddress as error:
            raise _invalid(address, error) from None
    click.echo(
        f"{entry.address} is no longer suppressed (was: {entry.reason} since"
        f" {entry.created_at:%Y-%m-%d %H:%M} UTC, source: {entry.source})."
    )
