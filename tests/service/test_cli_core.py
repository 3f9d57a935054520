"""The ``sluice`` commands ``init``, ``settings`` and ``--help``, run through
Click against the test's own database."""

from __future__ import annotations

import json
import re

import click
import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from app.cli import build_cli
from app.models import User
from app.services.runtime_settings import SPECS

PASSWORD_LINE = re.compile(r"password, shown only this once: (\S+)")


def run(app: Flask, *args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), obj=ScriptInfo(create_app=lambda: app))


@pytest.fixture
def initialised(app: Flask) -> Result:
    result = run(app, "init")
    assert result.exit_code == 0, result.output
    return result


def test_init_prints_the_generated_password_once(
    app: Flask, session: Session, initialised: Result
) -> None:
    passwords = PASSWORD_LINE.findall(initialised.output)
    assert len(passwords) == 1
    user = session.scalars(select(User)).one()
    assert check_password_hash(user.password_hash, passwords[0])

    again = run(app, "init")
    assert again.exit_code == 0, again.output
    assert "password" not in again.output.lower()
    assert "Created administrator" not in again.output
    assert session.scalar(select(func.count()).select_from(User)) == 1


def test_settings_set_with_one_bad_value_saves_nothing(app: Flask, initialised: Result) -> None:
    result = run(app, "settings", "set", "max_per_hour=500", "batch_size=abc")
    assert result.exit_code != 0
    assert "batch_size" in result.output
    assert "nothing was saved" in result.output

    shown = run(app, "settings", "show")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["max_per_hour"] == 1000  # the seeded default


def test_settings_set_then_show_as_json(app: Flask, initialised: Result) -> None:
    result = run(app, "settings", "set", "max_per_hour=500", "open_tracking=on")
    assert result.exit_code == 0, result.output
    shown = json.loads(run(app, "settings", "show").output)
    assert set(shown) == set(SPECS)
    assert (shown["max_per_hour"], shown["open_tracking"]) == (500, True)


def test_settings_show_before_init_says_to_run_init(app: Flask) -> None:
    result = run(app, "settings", "show")
    assert result.exit_code != 0
    assert "sluice init" in result.output
    assert "Traceback" not in result.output


def described_commands(help_text: str) -> dict[str, str]:
    """``name: first line of description`` from the Commands section of --help."""
    section = help_text.partition("Commands:")[2]
    return dict(re.findall(r"^  (\S+)\s+(\S.*)$", section, re.MULTILINE))


def test_help_lists_every_command_with_a_description() -> None:
    # --help needs no app and no database: it must work before `sluice init`.
    cli = build_cli()
    assert isinstance(cli, click.Group)
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    assert set(described_commands(result.output)) == set(cli.commands)
    for group_name, command in cli.commands.items():
        if isinstance(command, click.Group):
            group_help = CliRunner().invoke(cli, [group_name, "--help"]).output
            assert set(described_commands(group_help)) == set(command.commands), group_name
