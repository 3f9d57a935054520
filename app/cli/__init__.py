"""The ``sluice`` command: a Flask CLI group built on ``create_app``.

Commands are thin: they parse arguments, call a service, print the result.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup, ScriptInfo
from flask_migrate.cli import db as migrations_group

from config import ConfigError


def _create_app() -> Flask:
    from app import create_app

    try:
        return create_app()
    except ConfigError as error:
        # Start-up stops with the key named, not a traceback.
        raise click.ClickException(f"configuration error: {error}") from None


def build_cli() -> click.Group:
    from app.cli.bounces import bounces_group
    from app.cli.campaigns import campaigns_group
    from app.cli.contacts import contacts_group
    from app.cli.core import demo_command, init_command, run_command, settings_group, web_command
    from app.cli.dispatch import dispatch_command, queue_group, status_command
    from app.cli.lists import audience_command, lists_group
    from app.cli.messages import send_test_command
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
        migrations_group,
    ):
        cli.add_command(command)
    return cli


def main() -> None:
    script_info = ScriptInfo(
        create_app=_create_app, set_debug_flag=False, load_dotenv_defaults=False
    )
    build_cli().main(prog_name="sluice", obj=script_info)
