"""``sluice campaigns …``: list, pre-flight, schedule and copy mass emails;
a campaign's tracking URLs (``sluice campaigns tracking-url add|list|remove``)."""

from __future__ import annotations

from datetime import datetime

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.orm import Session

from app import app_dkim_key, app_settings
from app.cli.common import unit_of_work
from app.clock import SystemClock
from app.extensions import db
from app.models import Campaign, MassEmail
from app.services.campaigns import (
    CampaignError,
    active_campaigns,
    add_tracking_url,
    copy_mass_email,
    remove_tracking_url,
    schedule_mass_email,
    tracking_urls,
)
from app.services.preflight import Finding, preflight
from app.services.runtime_settings import get_runtime_settings


def _session() -> Session:
    return db.session()


def _mass_email(session: Session, mass_email_id: int) -> MassEmail:
    mass_email = session.get(MassEmail, mass_email_id)
    if mass_email is None or mass_email.deleted_at is not None:
        raise click.ClickException(f"no mass email with id {mass_email_id}")
    return mass_email


def _campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.deleted_at is not None:
        raise click.ClickException(f"no campaign with id {campaign_id}")
    return campaign


def _secret_key() -> str:
    return str(current_app.config["SECRET_KEY"])


def _echo_findings(findings: list[Finding]) -> None:
    for finding in findings:
        click.echo(f"{finding.severity:<7}  {finding.code}: {finding.message}")
        if finding.examples:
            click.echo(f"         e.g. {', '.join(finding.examples)}")


def _iso_time(
    _context: click.Context, _parameter: click.Parameter, value: str | None
) -> datetime | None:
    """``--at``: ISO 8601; a time without a zone is the machine's local time."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.astimezone()


@click.group("campaigns")
def campaigns_group() -> None:
    """Campaigns and their mass emails."""


@campaigns_group.command("list")
@with_appcontext
def campaigns_list() -> None:
    """Show every campaign with its mass emails."""
    campaigns = active_campaigns(_session())
    if not campaigns:
        click.echo("No campaigns yet.")
        return
    for campaign in campaigns:
        click.echo(f"{campaign.id}  {campaign.name}  ({campaign.type})")
        for mass_email in campaign.mass_emails:
            if mass_email.deleted_at is not None:
                continue
            start = mass_email.start_at.isoformat() if mass_email.start_at else "-"
            click.echo(f"    {mass_email.id}  {mass_email.status:<11}  {start}  {mass_email.name}")


@campaigns_group.command("preflight")
@click.argument("mass_email_id", type=int)
@click.option("--no-spam-check", is_flag=True, help="Skip SpamAssassin.")
@with_appcontext
def campaigns_preflight(mass_email_id: int, no_spam_check: bool) -> None:
    """Run the pre-flight check of MASS_EMAIL_ID; exit 1 when it finds errors."""
    session = _session()
    findings = preflight(
        session,
        _mass_email(session, mass_email_id),
        runtime=get_runtime_settings(session),
        settings=app_settings(current_app),
        secret_key=_secret_key(),
        clock=SystemClock(),
        spam_check=not no_spam_check,
        dkim_key=app_dkim_key(current_app),
    )
    _echo_findings(findings)
    if any(finding.severity == "error" for finding in findings):
        raise SystemExit(1)


@campaigns_group.command("schedule")
@click.argument("mass_email_id", type=int)
@click.option(
    "--at",
    "start_at",
    callback=_iso_time,
    help="Start time, ISO 8601 such as 2026-05-01T09:00+02:00; without a zone, local "
    "time (default: now).",
)
@click.option(
    "--confirm-can-spam",
    is_flag=True,
    help="Confirm that the subject and content meet CAN-SPAM (required).",
)
@with_appcontext
def campaigns_schedule(
    mass_email_id: int, start_at: datetime | None, confirm_can_spam: bool
) -> None:
    """Schedule draft MASS_EMAIL_ID to start at --at, or now."""
    session = _session()
    mass_email = _mass_email(session, mass_email_id)
    with unit_of_work(CampaignError):
        findings = schedule_mass_email(
            session,
            mass_email,
            start_at=start_at,
            can_spam_confirmed=confirm_can_spam,
            runtime=get_runtime_settings(session),
            settings=app_settings(current_app),
            secret_key=_secret_key(),
            clock=SystemClock(),
            dkim_key=app_dkim_key(current_app),
        )
    _echo_findings(findings)
    assert mass_email.start_at is not None
    click.echo(f"Scheduled mass email {mass_email.id} for {mass_email.start_at.isoformat()}.")


@campaigns_group.command("copy")
@click.argument("mass_email_id", type=int)
@with_appcontext
def campaigns_copy(mass_email_id: int) -> None:
    """Copy MASS_EMAIL_ID into a new draft (subject "COPY #n …")."""
    with unit_of_work(CampaignError) as session:
        copy = copy_mass_email(session, _mass_email(session, mass_email_id), SystemClock())
    click.echo(f"Created draft {copy.id}: {copy.subject}")


@campaigns_group.group("tracking-url")
def tracking_url_group() -> None:
    """A campaign's tracking URLs: templates link to them with
    {{ tracking_url('NAME') }} or {trackingUrl:NAME}."""


@tracking_url_group.command("add")
@click.argument("campaign_id", type=int)
@click.argument("name")
@click.argument("url")
@with_appcontext
def tracking_url_add(campaign_id: int, name: str, url: str) -> None:
    """Give CAMPAIGN_ID the tracking URL NAME pointing at URL."""
    with unit_of_work(CampaignError) as session:
        tracking = add_tracking_url(
            session, _campaign(session, campaign_id), name, url, SystemClock()
        )
    click.echo(f"Added tracking URL {tracking.name!r}: {tracking.url}")


@tracking_url_group.command("list")
@click.argument("campaign_id", type=int)
@with_appcontext
def tracking_url_list(campaign_id: int) -> None:
    """Show CAMPAIGN_ID's tracking URLs."""
    found = tracking_urls(_campaign(_session(), campaign_id))
    if not found:
        click.echo("No tracking URLs.")
    for tracking in found:
        click.echo(f"{tracking.name}  {tracking.url}")


@tracking_url_group.command("remove")
@click.argument("campaign_id", type=int)
@click.argument("name")
@with_appcontext
def tracking_url_remove(campaign_id: int, name: str) -> None:
    """Remove tracking URL NAME from CAMPAIGN_ID (mass emails already
    scheduled keep it)."""
    with unit_of_work(CampaignError) as session:
        remove_tracking_url(session, _campaign(session, campaign_id), name)
    click.echo(f"Removed tracking URL {name.strip()!r}.")
