"""Boot-time settings: environment, TOML file, defaults, and errors that name
the key a user got wrong."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

import config
from config import SETTING_NAMES, ConfigError, Settings, ensure_secret_key, load_settings

EXAMPLE_FILE = Path(config.__file__).parent / "sluice.example.toml"


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sluice.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_environment_values_are_parsed_and_typed() -> None:
    settings = load_settings(
        environ={
            "SLUICE_DATABASE_URL": "postgresql://sluice@db.example.com/sluice",
            "SLUICE_DEFAULT_MAX_PER_HOUR": " 250 ",
            "SLUICE_SITE_URL": "https://mail.example.com",
            "SLUICE_BOUNCE_ADDRESS": "bounces@bounce.example.com",
        }
    )
    assert settings.database_url == "postgresql://sluice@db.example.com/sluice"
    assert settings.default_max_per_hour == 250
    assert settings.site_url == "https://mail.example.com"
    assert settings.bounce_address == "bounces@bounce.example.com"
    assert settings.default_batch_size == Settings().default_batch_size


def test_toml_file_named_by_sluice_config_is_read(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path, 'default_batch_size = 25\nsite_url = "https://sluice.example.org"\n'
    )
    settings = load_settings(environ={"SLUICE_CONFIG": str(path)})
    assert settings.default_batch_size == 25
    assert settings.site_url == "https://sluice.example.org"


def test_environment_beats_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "default_batch_size = 25\ndefault_max_per_hour = 300\n")
    settings = load_settings(
        environ={"SLUICE_CONFIG": str(path), "SLUICE_DEFAULT_BATCH_SIZE": "40"}
    )
    assert settings.default_batch_size == 40
    assert settings.default_max_per_hour == 300


def test_unknown_environment_variable_stops_with_its_name() -> None:
    with pytest.raises(ConfigError, match="SLUICE_DATABSE_URL"):
        load_settings(environ={"SLUICE_DATABSE_URL": "sqlite:///x.db"})


def test_unknown_file_key_stops_with_its_name(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "max_per_hour = 10\n")
    with pytest.raises(ConfigError, match="max_per_hour"):
        load_settings(environ={"SLUICE_CONFIG": str(path)})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SLUICE_DEFAULT_MAX_PER_HOUR", "lots"),
        ("SLUICE_DEFAULT_MAX_PER_HOUR", "1.5"),
        ("SLUICE_DEFAULT_MAX_PER_HOUR", "0"),
        ("SLUICE_DEFAULT_BATCH_SIZE", "-5"),
        ("SLUICE_DEFAULT_BATCH_SIZE", "²"),
        ("SLUICE_DATABASE_URL", "mysql://db.example.com/sluice"),
        ("SLUICE_DATABASE_URL", "postgresql:///no-host"),
        ("SLUICE_SITE_URL", "javascript:alert(1)"),
        ("SLUICE_SITE_URL", "ftp://example.com"),
        ("SLUICE_BOUNCE_ADDRESS", "not-an-address"),
        ("SLUICE_ADMIN_EMAIL", "admin@"),
    ],
)
def test_malformed_environment_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(environ={name: value})


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('default_max_per_hour = "lots"', "default_max_per_hour"),
        ("default_batch_size = true", "default_batch_size"),
        ("site_url = 5", "site_url"),
        ('database_url = "redis://cache.example.com"', "database_url"),
    ],
)
def test_malformed_file_value_names_the_key(tmp_path: Path, line: str, key: str) -> None:
    path = write_toml(tmp_path, line + "\n")
    with pytest.raises(ConfigError, match=key):
        load_settings(environ={"SLUICE_CONFIG": str(path)})


def test_bad_boolean_is_refused() -> None:
    # No boot-time setting is a boolean yet; the parser is the one new keys use.
    assert config._parse_bool(" Yes ") is True
    assert config._parse_bool("off") is False
    for value in ("maybe", "", "2", 1):
        with pytest.raises(ValueError, match="true or false"):
            config._parse_bool(value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "default_batch_size = = 3\n")
    with pytest.raises(ConfigError, match=r"SLUICE_CONFIG.*not valid TOML"):
        load_settings(environ={"SLUICE_CONFIG": str(path)})


@pytest.mark.parametrize("target", ["missing.toml", "."])
def test_unreadable_file_names_sluice_config(tmp_path: Path, target: str) -> None:
    # A missing file and a directory: both unreadable, even for root.
    with pytest.raises(ConfigError, match="SLUICE_CONFIG: cannot read"):
        load_settings(environ={"SLUICE_CONFIG": str(tmp_path / target)})


def test_secrets_are_never_echoed_in_errors(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "admin_password = 123456789012345\n")
    with pytest.raises(ConfigError, match="admin_password") as error:
        load_settings(environ={"SLUICE_CONFIG": str(path)})
    assert "123456789012345" not in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_settings(environ={"SLUICE_DATABASE_URL": "mysql://sluice:hunter2@db.example.com/x"})
    assert "hunter2" not in str(error.value)


def test_non_setting_variables_are_ignored() -> None:
    settings = load_settings(
        environ={
            "SLUICE_REQUIRE_SERVICES": "1",
            "SLUICE_TEST_POSTGRES_URL": "postgresql://x@y/z",
            "PATH": "/usr/bin",
        }
    )
    assert settings == Settings()


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path: Path) -> None:
    settings = load_settings(environ={}, instance_path=str(tmp_path / "inst"))
    assert settings.database_url_or_default() == f"sqlite:///{tmp_path / 'inst' / 'sluice.db'}"
    configured = load_settings(environ={"SLUICE_DATABASE_URL": "postgresql://a@h/db"})
    assert configured.database_url_or_default() == "postgresql://a@h/db"


def test_secret_key_is_generated_once_with_private_mode(tmp_path: Path) -> None:
    settings = load_settings(environ={}, instance_path=str(tmp_path / "inst"))
    first = ensure_secret_key(settings)
    key_file = tmp_path / "inst" / "secret_key"
    assert len(first) >= 32
    assert key_file.read_text(encoding="ascii").strip() == first
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert ensure_secret_key(settings) == first


def test_configured_secret_key_wins(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"SLUICE_SECRET_KEY": "configured-key"}, instance_path=str(tmp_path)
    )
    assert ensure_secret_key(settings) == "configured-key"
    assert not (tmp_path / "secret_key").exists()


def uncommented_example() -> str:
    """The example with every ``# key = value`` line switched on."""
    pattern = re.compile(rf"^# ((?:{'|'.join(SETTING_NAMES)}) = .*)$", re.MULTILINE)
    return pattern.sub(r"\1", EXAMPLE_FILE.read_text(encoding="utf-8"))


def test_example_file_parses_and_documents_every_key(tmp_path: Path) -> None:
    assert load_settings(environ={"SLUICE_CONFIG": str(EXAMPLE_FILE)}) == Settings()
    # Every key appears, switched on by removing "# ", and the values shown are
    # valid: a user who uncomments them can start.
    enabled_text = uncommented_example()
    assert set(tomllib.loads(enabled_text)) == {field.name for field in fields(Settings)}
    enabled = write_toml(tmp_path, enabled_text)
    settings = load_settings(environ={"SLUICE_CONFIG": str(enabled)})
    assert settings.bounce_address == "bounces@bounce.example.com"


def test_sluice_command_exits_non_zero_naming_an_unknown_variable(tmp_path: Path) -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("SLUICE_")}
    environ["SLUICE_DATABSE_URL"] = f"sqlite:///{tmp_path / 'typo.db'}"
    result = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "settings", "show"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SLUICE_DATABSE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "typo.db").exists()
