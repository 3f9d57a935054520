"""``sluice lists …`` and ``sluice audience``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli.common import unit_of_work
from app.clock import SystemClock
from app.extensions import db
from app.models import Contact, TargetList
from app.services.addresses import InvalidAddress, normalise_address
from app.services.audience import AudienceCategory, resolve_audience
from app.services.target_lists import (
    ContactFilter,
    TargetListError,
    add_members,
    create_target_list,
    get_saved_filter,
    get_target_list,
    list_summaries,
    populate_from_filter,
    remove_members,
    save_filter,
)


def _session() -> Session:
    return db.session()


def _target_list(session: Session, name: str) -> TargetList:
    try:
        return get_target_list(session, name)
    except LookupError as error:
        raise click.ClickException(str(error)) from None


@click.group("lists")
def lists_group() -> None:
    """Create target lists and fill them."""


@lists_group.command("list")
@with_appcontext
def lists_list() -> None:
    """Show every target list with its number of members."""
    summaries = list_summaries(_session())
    if not summaries:
        click.echo("No target lists yet.")
        return
    width = max(len("name"), *(len(summary.name) for summary in summaries))
    click.echo(f"{'name':<{width}}  {'members':>9}  description")
    for summary in summaries:
        click.echo(f"{summary.name:<{width}}  {summary.member_count:>9,}  {summary.description}")


@lists_group.command("create")
@click.argument("name")
@click.option("--description", default="", help="What the list is for.")
@with_appcontext
def lists_create(name: str, description: str) -> None:
    """Create an empty target list called NAME."""
    with unit_of_work(TargetListError) as session:
        target_list = create_target_list(session, name, description, SystemClock())
    click.echo(f"Created target list {target_list.name!r}.")


def _contact_ids(session: Session, addresses: Sequence[str]) -> tuple[list[int], list[str]]:
    """Ids of the contacts with these addresses, and the addresses of none."""
    keys: dict[str, str] = {}
    unknown: list[str] = []
    for address in addresses:
        try:
            keys[normalise_address(address)[1]] = address
        except InvalidAddress:
            unknown.append(address)
    found = session.execute(
        select(Contact.id, Contact.email_lower).where(Contact.email_lower.in_(keys))
    ).all()
    found_keys = {key for _, key in found}
    unknown += [address for key, address in keys.items() if key not in found_keys]
    return [contact_id for contact_id, _ in found], unknown


def _report_unknown(unknown: Sequence[str]) -> None:
    if unknown:
        raise click.ClickException(f"no contact with address: {', '.join(unknown)}")


@lists_group.command("add")
@click.argument("name")
@click.argument("addresses", nargs=-1, required=True, metavar="ADDRESS...")
@with_appcontext
def lists_add(name: str, addresses: tuple[str, ...]) -> None:
    """Add the contacts with these addresses to list NAME."""
    session = _session()
    target_list = _target_list(session, name)
    contact_ids, unknown = _contact_ids(session, addresses)
    added = add_members(session, target_list, contact_ids, SystemClock())
    session.commit()
    click.echo(f"Added {added} contact(s) to {target_list.name!r}.")
    _report_unknown(unknown)


@lists_group.command("remove")
@click.argument("name")
@click.argument("addresses", nargs=-1, required=True, metavar="ADDRESS...")
@with_appcontext
def lists_remove(name: str, addresses: tuple[str, ...]) -> None:
    """Remove the contacts with these addresses from list NAME."""
    session = _session()
    target_list = _target_list(session, name)
    contact_ids, unknown = _contact_ids(session, addresses)
    removed = remove_members(session, target_list, contact_ids, SystemClock())
    session.commit()
    click.echo(f"Removed {removed} contact(s) from {target_list.name!r}.")
    _report_unknown(unknown)


def _day(value: datetime | None) -> datetime | None:
    # click.DateTime parses naive dates; the filter compares UTC instants.
    return value.replace(tzinfo=UTC) if value else None


def _field(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    key, separator, field_value = value.partition("=")
    if not separator or not key.strip():
        raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--field")
    return (key.strip(), field_value)


@lists_group.command("populate")
@click.argument("name")
@click.option("--type", "audience_types", multiple=True, help="Audience type (repeatable).")
@click.option("--company", help="Company, compared ignoring case.")
@click.option(
    "--created-from", type=click.DateTime(["%Y-%m-%d"]), help="Created on or after (UTC)."
)
@click.option(
    "--created-to", type=click.DateTime(["%Y-%m-%d"]), help="Created before this day (UTC)."
)
@click.option("--opted-out/--not-opted-out", default=None, help="Mass-email opt-out state.")
@click.option("--field", "custom_field", metavar="KEY=VALUE", help="Custom field equals value.")
@click.option("--save-as", metavar="FILTER", help="Also save these criteria under this name.")
@click.option("--filter", "saved_filter", metavar="SAVED_FILTER", help="Use a saved filter.")
@with_appcontext
def lists_populate(
    name: str,
    *,
    audience_types: tuple[str, ...],
    company: str | None,
    created_from: datetime | None,
    created_to: datetime | None,
    opted_out: bool | None,
    custom_field: str | None,
    save_as: str | None,
    saved_filter: str | None,
) -> None:
    """Add to list NAME, once, every contact matching the criteria (or a saved
    filter); no criteria match every contact. Contacts that match later are not
    added by themselves."""
    session = _session()
    target_list = _target_list(session, name)
    criteria_given = opted_out is not None or any(
        (audience_types, company, created_from, created_to, custom_field)
    )
    if saved_filter is not None and (criteria_given or save_as):
        raise click.UsageError("--filter cannot be combined with criteria or --save-as")
    with unit_of_work(TargetListError, LookupError):
        if saved_filter is not None:
            contact_filter = get_saved_filter(session, saved_filter)
        else:
            contact_filter = ContactFilter(
                audience_types=audience_types,
                company=company,
                created_from=_day(created_from),
                created_to=_day(created_to),
                opted_out=opted_out,
                custom_field=_field(custom_field),
            )
            if save_as:
                save_filter(session, save_as, contact_filter, SystemClock())
        added = populate_from_filter(session, target_list, contact_filter, SystemClock())
    click.echo(f"Added {added} contact(s) to {target_list.name!r}.")


@click.command("audience")
@click.option("--list", "list_names", multiple=True, required=True, help="Target list.")
@click.option("--exclude", "excluding_names", multiple=True, help="Excluding list.")
@with_appcontext
def audience_command(list_names: tuple[str, ...], excluding_names: tuple[str, ...]) -> None:
    """Count who a campaign on some lists would reach."""
    session = _session()
    targets = [_target_list(session, name).id for name in list_names]
    excluding = [_target_list(session, name).id for name in excluding_names]
    summary = resolve_audience(session, targets, excluding)
    for category in AudienceCategory:
        click.echo(f"{category.value:<16} {getattr(summary, category.value):>10,}")
    click.echo(f"{'excluded':<16} {summary.excluded:>10,}")
