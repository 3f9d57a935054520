"""The ``sluice`` command: a Flask CLI group built on ``create_app``.

Commands are thin: they parse arguments, call a service, print the result.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from config import ConfigError

if TYPE_CHECKING:
    from flask import Flask

# Commands that need neither the app nor its settings: served before the
# Flask CLI is built (``sluice bounces classify`` runs on batches of files
# and starts several times faster this way).
APP_FREE_COMMANDS = {("bounces", "classify")}


def _create_app() -> Flask:
    from app import create_app

    try:
        return create_app()
    except ConfigError as error:
        # Start-up stops with the key named, not a traceback.
        raise click.ClickException(f"configuration error: {error}") from None


def build_cli() -> click.Group:
    from flask.cli import AppGroup
    from flask_migrate.cli import db as migrations_group

    from app.cli.bounces import bounces_group
    from app.cli.campaigns import campaigns_group
    from app.cli.contacts import contacts_group
    from app.cli.core import demo_command, init_command, run_command, settings_group, web_command
    from app.cli.dispatch import dispatch_command, queue_group, status_command
    from app.cli.lists import audience_command, lists_group
    from app.cli.messages import send_test_command
    from app.cli.suppression import suppression_group
    from app.cli.worker import jobs_command, worker_command

    cli = AppGroup("sluice", help="Sluice: a self-hosted mass-email campaign engine.")
    for command in (
        init_command,
        demo_command,
        run_command,
        web_command,
        settings_group,
        contacts_group,
        lists_group,
        audience_command,
        send_test_command,
        campaigns_group,
        dispatch_command,
        queue_group,
        status_command,
        worker_command,
        jobs_command,
        bounces_group,
        suppression_group,
        migrations_group,
    ):
        cli.add_command(command)
    return cli


def main() -> None:
    if tuple(sys.argv[1:3]) in APP_FREE_COMMANDS:
        from app.cli.bounces import classify_command

        classify_command.main(args=sys.argv[3:], prog_name="sluice bounces classify")
        return
    from flask.cli import ScriptInfo

    script_info = ScriptInfo(
        create_app=_create_app, set_debug_flag=False, load_dotenv_defaults=False
    )
    build_cli().main(prog_name="sluice", obj=script_info)
