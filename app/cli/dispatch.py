"""``sluice dispatch --once``, ``sluice queue retry-interrupted``, ``sluice
queue resend`` and ``sluice status``: the dispatcher from the command line
(cron, operators)."""

from __future__ import annotations

import getpass
from datetime import datetime

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.orm import Session

from app.cli.common import unit_of_work
from app.clock import Clock
from app.context import (
    SmtpNotConfigured,
    app_clock,
    app_message_config,
    app_transport_factory,
    runner_id,
)
from app.extensions import current_session
from app.models import QueueItemStatus
from app.services.dispatch import DispatchError, retry_interrupted
from app.services.dispatch_send import TickResult, dispatch_tick
from app.services.dispatch_status import Progress, mass_email_progress
from app.services.pacing import GroupPace
from app.services.queue_build import activate_due
from app.services.resend import resend_after_correction
from app.services.runtime_settings import RuntimeSettings, get_runtime_settings


def _clock() -> Clock:
    return app_clock(current_app)


def _runtime(session: Session) -> RuntimeSettings:
    try:
        return get_runtime_settings(session)
    except LookupError as error:
        raise click.ClickException(str(error)) from None


def _summary(started: list[int], result: TickResult) -> list[str]:
    lines = []
    if started:
        lines.append(f"Started mass email(s) {', '.join(map(str, started))}.")
    lines.append(result.counts().capitalize() + ".")
    if result.interrupted:
        lines.append(
            f"{result.interrupted} item(s) found with an expired lease are now interrupted; "
            "`sluice queue retry-interrupted MASS_EMAIL_ID` sends them again."
        )
    if result.completed:
        lines.append(f"Completed mass email(s) {', '.join(map(str, result.completed))}.")
    for group, until in result.throttled.items():
        lines.append(
            f"Domain group {group} is throttled until {until:%Y-%m-%d %H:%M} UTC after a "
            "rate-limit reply; its unsent claims were released."
        )
    if result.stopped:
        lines.append(f"The tick ended early: {result.stopped}.")
    return lines


@click.command("dispatch")
@click.option("--once", is_flag=True, help="Run one tick and exit (for cron).")
@with_appcontext
def dispatch_command(once: bool) -> None:
    """Start due mass emails and send one portion under the hourly quota.
    Exits non-zero when sending had to be paused (see the message)."""
    if not once:
        raise click.UsageError(
            "`sluice dispatch` runs one tick and needs --once; run it every minute from "
            "cron or a systemd timer"
        )
    session = current_session()
    clock = _clock()
    runtime = _runtime(session)
    try:
        transport_factory = app_transport_factory(current_app)
    except SmtpNotConfigured as error:
        raise click.ClickException(str(error)) from None
    config = app_message_config(current_app)
    started = activate_due(session, clock)
    result = dispatch_tick(session, transport_factory, clock, runtime, runner_id(), config=config)
    for line in _summary(started, result):
        click.echo(line)
    if result.paused:
        paused = ", ".join(map(str, result.paused))
        raise click.ClickException(
            f"paused mass email(s) {paused}: see their campaign log, fix the cause and resume"
        )


@click.group("queue")
def queue_group() -> None:
    """The send queue of mass emails."""


@queue_group.command("retry-interrupted")
@click.argument("mass_email_id", type=int)
@with_appcontext
def retry_interrupted_command(mass_email_id: int) -> None:
    """Send MASS_EMAIL_ID's interrupted items again. Their runner stopped
    mid-conversation, so some may have arrived already: decide first."""
    with unit_of_work(DispatchError) as session:
        count = retry_interrupted(session, mass_email_id, _clock())
    click.echo(f"{count} interrupted item(s) of mass email {mass_email_id} are queued again.")


def _operator() -> str:
    """Who runs this command, for the campaign log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (containers)
        user = "unknown user"
    return f"{user} (command line)"


@queue_group.command("resend")
@click.argument("queue_item_id", type=int)
@click.option(
    "--by",
    "requested_by",
    metavar="NAME",
    help="Who asks for the resend, for the campaign log (default: your login name).",
)
@with_appcontext
def resend_command(queue_item_id: int, requested_by: str | None) -> None:
    """Send QUEUE_ITEM_ID once more, to its contact's corrected address.

    Only for a recipient that bounced, was dropped, errored or failed, and
    only once; correct the address first (`sluice contacts change-address`).
    """
    with unit_of_work(DispatchError) as session:
        resend = resend_after_correction(
            session, queue_item_id, _clock(), requested_by=requested_by or _operator()
        )
    click.echo(
        f"Queue item {resend.queue_item_id} of mass email {resend.mass_email_id} is queued "
        f"again for {resend.new_email} (was {resend.old_email or 'no address'})."
    )
    if resend.reopened:
        click.echo(
            f"Mass email {resend.mass_email_id} was complete and is in progress again "
            "until it is sent."
        )


def _when(moment: datetime, now: datetime) -> str:
    minutes = max(0, round((moment - now).total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    span = f"{hours} h {minutes} min" if hours else f"{minutes} min"
    return f"{moment:%Y-%m-%d %H:%M} UTC (in about {span})"


def pacing_lines(paces: list[GroupPace], now: datetime) -> list[str]:
    """Each domain group's use of the last 60 minutes, caps and throttle."""
    lines = ["Domain groups (all mass emails, last 60 minutes):"]
    for pace in paces:
        cap = f"of {pace.hourly_cap}/h" if pace.hourly_cap else "(global quota only)"
        connections = (
            f", at most {pace.connection_cap} connection(s)" if pace.connection_cap else ""
        )
        line = f"  {pace.group.value:<8} {pace.used:>7} claimed {cap}{connections}"
        if pace.throttled_until is not None:
            line += f"; throttled until {_when(pace.throttled_until, now)}: {pace.throttle_reply}"
        lines.append(line)
    return lines


def progress_lines(progress: Progress, now: datetime) -> list[str]:
    lines = [f"Mass email {progress.mass_email_id} ({progress.name}): {progress.status}"]
    for status in QueueItemStatus:
        count = progress.counts.get(status, 0)
        if count:
            lines.append(f"  {status.value:<13} {count:>9}")
    lines.append(f"  {'total':<13} {progress.total:>9}")
    lines.append(f"Quota left in the current hour (all mass emails): {progress.quota_left}")
    lines += pacing_lines(progress.paces, now)
    if progress.eta is not None:
        shared = (
            f", shared with {progress.sharing_with} other mass email(s)"
            if progress.sharing_with
            else ""
        )
        lines.append(
            f"Estimated end: {_when(progress.eta, now)} at ~{progress.hourly_pace:.0f}/h{shared}"
        )
    elif progress.remaining:
        lines.append(f"No estimate while it is {progress.status}.")
    return lines


@click.command("status")
@click.argument("mass_email_id", type=int)
@with_appcontext
def status_command(mass_email_id: int) -> None:
    """Counts per recipient status of MASS_EMAIL_ID and when it should be done."""
    session = current_session()
    clock = _clock()
    try:
        progress = mass_email_progress(session, mass_email_id, clock, _runtime(session))
    except DispatchError as error:
        raise click.ClickException(str(error)) from None
    for line in progress_lines(progress, clock.now()):
        click.echo(line)
