"""``sluice send-test``: one mass email to one address, at once, as a test."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from app import app_dkim_key, app_settings
from app.clock import SystemClock
from app.extensions import current_session
from app.models import MassEmail
from app.services.messages import MessageError, send_test
from app.services.runtime_settings import get_runtime_settings
from app.services.transport import SmtpTransport, parse_smtp_url

SMTP_URL_EXAMPLE = "smtp://user:password@relay.example.com:587?starttls=1"


def _transport() -> SmtpTransport:
    """The relay of ``SLUICE_SMTP_URL``; a clear error when it is missing or bad."""
    smtp_url = app_settings(current_app).smtp_url
    if not smtp_url:
        raise click.ClickException(
            f"no SMTP relay is configured: set SLUICE_SMTP_URL (e.g. {SMTP_URL_EXAMPLE})"
        )
    try:
        return SmtpTransport(parse_smtp_url(smtp_url))
    except ValueError as error:
        raise click.ClickException(f"SLUICE_SMTP_URL: {error}") from None


@click.command("send-test")
@click.argument("mass_email_id", type=int)
@click.option("--to", "to_address", required=True, help="Address the test goes to.")
@click.option(
    "--contact",
    "contact_id",
    type=int,
    help="Render for this contact id (default: the campaign's first recipient).",
)
@with_appcontext
def send_test_command(mass_email_id: int, to_address: str, contact_id: int | None) -> None:
    """Send MASS_EMAIL_ID to --to at once, marked as a test ("[TEST] "
    subject, X-Sluice-Test header). Nothing is recorded and no quota is
    used. Prints the relay's reply; exits non-zero when it was not accepted."""
    session = current_session()
    mass_email = session.get(MassEmail, mass_email_id)
    if mass_email is None:
        raise click.ClickException(f"no mass email with id {mass_email_id}")
    try:
        runtime = get_runtime_settings(session)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    transport = _transport()
    try:
        result = send_test(
            session,
            mass_email,
            to_address,
            contact_id,
            transport,
            clock=SystemClock(),
            runtime=runtime,
            settings=app_settings(current_app),
            secret_key=current_app.config["SECRET_KEY"],
            dkim_key=app_dkim_key(current_app),
        )
    except MessageError as error:
        raise click.ClickException(str(error)) from None
    finally:
        transport.close()
    reply = f"{result.code or '---'} {result.reply}".strip()
    if not result.accepted:
        raise click.ClickException(
            f"the relay did not accept the test message ({result.outcome}): {reply}"
        )
    click.echo(f"Test message accepted by the relay: {reply}")
