"""``sluice init``, ``demo``, ``run``, ``web`` and ``settings``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade

from app import MIGRATIONS_DIR, app_settings
from app.cli.common import console_logging, unit_of_work
from app.clock import SystemClock
from app.extensions import current_session, db
from app.services.demo import DemoDataError, load_demo_data
from app.services.mail_catcher import DEFAULT_PORT, MailCatcher, MailCatcherError, default_directory
from app.services.runtime_settings import (
    SPECS,
    SettingsValidationError,
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from app.services.users import ensure_first_admin
from app.web.dev_mail import MAIL_CATCHER_DIR_KEY
from config import ConfigError


@click.command("init")
@with_appcontext
def init_command() -> None:
    """Create or upgrade the database and the first administrator."""
    upgrade(directory=str(MIGRATIONS_DIR))
    settings = app_settings(current_app)
    clock = SystemClock()
    try:
        seeded = seed_runtime_settings(current_session(), settings, clock)
    except ConfigError as error:
        raise click.ClickException(f"configuration error: {error}") from None
    with unit_of_work(ValueError):
        admin = ensure_first_admin(
            current_session(), clock, settings.admin_email, settings.admin_password
        )
    if seeded:
        click.echo(f"Seeded {len(seeded)} runtime settings from the configuration.")
    if admin is not None:
        click.echo(f"Created administrator {admin.email}.")
        if admin.generated_password:
            click.echo(f"Its password, shown only this once: {admin.generated_password}")
    click.echo("Database is up to date.")


@click.command("demo", short_help="Load demo data (contacts, lists, a draft campaign).")
@click.option(
    "--if-empty",
    is_flag=True,
    help="Load only when the database has no contacts yet (first start).",
)
@with_appcontext
def demo_command(if_empty: bool) -> None:
    """Load demo contacts, target lists, a template and a draft campaign."""
    with unit_of_work(DemoDataError, LookupError):
        summary = load_demo_data(current_session(), SystemClock(), only_if_empty=if_empty)
    click.echo(summary)


def _serve(host: str, port: int) -> None:
    from waitress import serve

    # waitress calls the app from its own threads: hand it the real Flask
    # object, not the context-bound ``current_app`` proxy.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # waitress says "Serving on …" once the socket is bound: operators (and
    # the tests) wait for that line.
    console_logging("%(name)s: %(message)s")
    click.echo(f"Sluice web UI on http://{host}:{port}/ (Ctrl+C stops it)")
    serve(app, host=host, port=port, threads=8)


host_option = click.option("--host", default="127.0.0.1", show_default=True)
port_option = click.option("--port", default=5000, show_default=True, type=int)


@click.command("run")
@host_option
@port_option
@click.option(
    "--catcher-port",
    default=DEFAULT_PORT,
    show_default=True,
    type=int,
    help="Port of the development mail catcher on 127.0.0.1.",
)
@click.option(
    "--no-catcher",
    is_flag=True,
    help="Send through SLUICE_SMTP_URL instead of the development mail catcher.",
)
@with_appcontext
def run_command(host: str, port: int, catcher_port: int, no_catcher: bool) -> None:
    """Development mode: the whole product in one process — web UI, job
    runner and a mail catcher that keeps every message instead of sending it."""
    from app.cli.worker import start_background_runner, stop_on_sigterm

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stop_on_sigterm()
    web_url = f"http://{host}:{port}/"
    catcher = None if no_catcher else _start_catcher(app, catcher_port, web_url)
    try:
        runner = start_background_runner(app)
        click.echo(f"Job runner {runner.runner_id} started (`sluice jobs` shows it).")
        try:
            _serve(host, port)
        finally:
            runner.stop()
    finally:
        if catcher is not None:
            catcher.stop()


def _start_catcher(app: Flask, port: int, web_url: str) -> MailCatcher:
    """Start the catcher and point the app's SMTP and its /dev/mail page at it."""
    directory = default_directory(Path(app.instance_path))
    catcher = MailCatcher(directory, port=port)
    try:
        catcher.start()
    except MailCatcherError as error:
        raise click.ClickException(
            f"{error} (choose another with --catcher-port, or --no-catcher)"
        ) from None
    app.config["SLUICE_SETTINGS"] = replace(app_settings(app), smtp_url=catcher.smtp_url)
    app.config[MAIL_CATCHER_DIR_KEY] = str(directory)
    click.echo(
        f"Mail catcher on {catcher.smtp_url}: nothing leaves this machine; "
        f"caught mail is kept in {directory} and shown at {web_url}dev/mail"
    )
    return catcher


@click.command("web")
@host_option
@port_option
@with_appcontext
def web_command(host: str, port: int) -> None:
    """Serve the web UI only (run the job runner separately)."""
    _serve(host, port)


@click.group("settings")
def settings_group() -> None:
    """Show or change the runtime settings stored in the database."""


@settings_group.command("show")
@with_appcontext
def settings_show() -> None:
    """Print every runtime setting as JSON."""
    try:
        current = get_runtime_settings(current_session())
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(json.dumps(current.__dict__, indent=2, ensure_ascii=False))


@settings_group.command("set")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@with_appcontext
def settings_set(assignments: tuple[str, ...]) -> None:
    """Change settings; all are validated before any is saved."""
    changes: dict[str, object] = {}
    for assignment in assignments:
        key, separator, value = assignment.partition("=")
        if not separator:
            raise click.BadParameter(f"{assignment!r} is not KEY=VALUE")
        changes[key.strip()] = value
    try:
        update_runtime_settings(current_session(), changes, SystemClock())
    except SettingsValidationError as error:
        db.session.rollback()
        for key, message in error.errors.items():
            click.echo(f"{key}: {message}", err=True)
        known = ", ".join(SPECS)
        raise click.ClickException(f"nothing was saved (settings: {known})") from None
    db.session.commit()
    click.echo(f"Saved {len(changes)} setting(s).")
