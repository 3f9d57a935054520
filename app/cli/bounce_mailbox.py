"""``sluice bounces poll --once`` and ``sluice bounces test-connection``: the
bounce mailbox from the command line (cron, operators).

Added to the ``bounces`` group (``app.cli.bounces``) by ``build_cli``; kept
apart because they need the Flask app, which ``sluice bounces classify``
does without (it is served before the app is built).
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from app import app_settings
from app.context import app_bounce_handler, app_clock, runner_id
from app.extensions import current_session
from app.services import bounce_poll
from bounce.mailbox import MailboxConfigError, parse_imap_url

IMAP_URL_EXAMPLE = "imaps://bounces:PASSWORD@imap.example.com/INBOX"


def _imap_url() -> str:
    imap_url = app_settings(current_app).imap_url
    if not imap_url:
        raise click.ClickException(
            f"no bounce mailbox is configured: set SLUICE_IMAP_URL (e.g. {IMAP_URL_EXAMPLE})"
        )
    return imap_url


@click.command("poll")
@click.option("--once", is_flag=True, help="Poll once and exit (for cron).")
@with_appcontext
def poll_command(once: bool) -> None:
    """Read the bounce mailbox once: apply each new message, then move it to
    Processed (or Unparsed). Exits non-zero when the poll ended early."""
    if not once:
        raise click.UsageError(
            "`sluice bounces poll` polls once and needs --once; `sluice worker` polls "
            "on its own every bounce_poll_interval_seconds"
        )
    imap_url = _imap_url()
    clock = app_clock(current_app)
    try:
        parse_imap_url(imap_url)  # a bad URL is told before anything else
        result = bounce_poll.poll_bounces(
            current_session(),
            imap_url,
            app_bounce_handler(current_app, clock),
            clock=clock,
            runner=runner_id(),
        )
    except MailboxConfigError as error:
        raise click.ClickException(f"SLUICE_IMAP_URL: {error}") from None
    click.echo(result.describe())
    for problem in result.stats.errors if result.stats else []:
        click.echo(f"  kept in Unparsed: {problem}")
    if result.error:
        raise click.ClickException(f"the poll ended early: {result.error}")


@click.command("test-connection")
@with_appcontext
def test_connection_command() -> None:
    """Connect to the bounce mailbox, log in and look at the folder, changing
    nothing; prints what the server said. Exits non-zero on a failure."""
    report = bounce_poll.test_connection(_imap_url())
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise click.ClickException(f"the connection test failed at the {report.failed_step} step")
