"""Boot-time settings: read once from ``SLUICE_*`` environment variables and an
optional TOML file named by ``SLUICE_CONFIG``.

Precedence: environment variable, then the TOML file, then the default. Every
key is declared once in ``FIELDS``; an unknown key or a value that does not
parse stops start-up with a ``ConfigError`` naming the key, so a typo such as
``SLUICE_DATABSE_URL`` never silently falls back to a default.

Settings an administrator changes at run time (quota, batch size, opt-out
policy, …) live in the database; the ``default_*`` values here only seed them
(see ``app.services.runtime_settings``).
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import available_timezones

ENV_PREFIX = "SLUICE_"

# SLUICE_* variables that are not settings: read by other parts of the tooling.
NON_SETTING_ENV = frozenset(
    {"SLUICE_CONFIG", "SLUICE_REQUIRE_SERVICES", "SLUICE_TEST_POSTGRES_URL", "SLUICE_BOUNCE_CORPUS"}
)


class ConfigError(ValueError):
    """A boot-time setting is unknown or malformed; the message names the key."""


def _parse_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    # ASCII digits only: str.isdigit() also accepts "²", which int() rejects.
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value.strip())
    raise ValueError("expected a whole number")


def _parse_positive_int(value: object) -> int:
    number = _parse_int(value)
    if number < 1:
        raise ValueError("expected a whole number of at least 1")
    return number


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
    raise ValueError("expected true or false")


def _url_parser(*schemes: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _parse_str(value).strip()
        parts = urlsplit(text)
        if parts.scheme.split("+")[0] not in schemes:
            raise ValueError(f"expected a URL starting with one of {', '.join(schemes)}")
        if parts.scheme.split("+")[0] != "sqlite" and not parts.hostname:
            raise ValueError("the URL has no host")
        return text

    return parse


COOKIE_SECURE_CHOICES = ("auto", "always", "never")


def _parse_cookie_secure(value: object) -> str:
    text = _parse_str(value).strip().lower()
    if text not in COOKIE_SECURE_CHOICES:
        raise ValueError(f"expected one of {', '.join(COOKIE_SECURE_CHOICES)}")
    return text


def _parse_address(value: object) -> str:
    text = _parse_str(value).strip()
    if text and (text.count("@") != 1 or text.startswith("@") or text.endswith("@")):
        raise ValueError("expected an email address")
    return text


# RFC 6376 §3.1 selector and §3.5 d= domain: dot-separated DNS labels.
_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
DKIM_SETTINGS = ("dkim_selector", "dkim_domain", "dkim_key_file")


def _parse_time_zone(value: object) -> str:
    text = _parse_str(value).strip()
    # Checked against the list before ZoneInfo opens any file (the name is a path).
    if text not in available_timezones():
        raise ValueError("expected an IANA time zone name such as UTC or Europe/Paris")
    return text


def _parse_dns_name(value: object) -> str:
    text = _parse_str(value).strip()
    if text and not _DNS_NAME.fullmatch(text):
        raise ValueError("expected a DNS name such as mail2026 or example.com")
    return text


@dataclass(frozen=True)
class Settings:
    """Typed boot-time settings. Field metadata holds the parser for each key."""

    database_url: str = field(default="", metadata={"parse": _url_parser("sqlite", "postgresql")})
    secret_key: str = field(default="", metadata={"parse": _parse_str})
    instance_path: str = field(default="instance", metadata={"parse": _parse_str})
    site_url: str = field(
        default="http://127.0.0.1:5000", metadata={"parse": _url_parser("http", "https")}
    )
    smtp_url: str = field(default="", metadata={"parse": _parse_str})
    imap_url: str = field(default="", metadata={"parse": _parse_str})
    bounce_address: str = field(default="", metadata={"parse": _parse_address})
    admin_email: str = field(default="", metadata={"parse": _parse_address})
    admin_password: str = field(default="", metadata={"parse": _parse_str})
    # The zone of every user who has not chosen their own on /account.
    default_time_zone: str = field(default="UTC", metadata={"parse": _parse_time_zone})
    # From of the mail Sluice sends its own users (invitations, password
    # links); empty: the address of the administrator who sends it.
    system_email_from: str = field(default="", metadata={"parse": _parse_address})
    # The session cookie's Secure flag: "auto" sets it when site_url is https.
    cookie_secure: str = field(default="auto", metadata={"parse": _parse_cookie_secure})
    # CSV imports in the browser (app.services.background_import): files up
    # to import_inline_max_kilobytes are imported while the request waits,
    # bigger ones up to import_max_megabytes are stored under the instance
    # folder and imported by the runner's contact-import job.
    import_max_megabytes: int = field(default=200, metadata={"parse": _parse_positive_int})
    import_inline_max_kilobytes: int = field(
        default=5 * 1024, metadata={"parse": _parse_positive_int}
    )
    # Seeds for the runtime settings stored in the database.
    default_max_per_hour: int = field(default=1000, metadata={"parse": _parse_positive_int})
    default_batch_size: int = field(default=100, metadata={"parse": _parse_positive_int})
    default_tick_interval_seconds: int = field(default=60, metadata={"parse": _parse_positive_int})
    default_company_name: str = field(default="", metadata={"parse": _parse_str})
    default_postal_address: str = field(default="", metadata={"parse": _parse_str})
    # DKIM signing (RFC 6376): all three or none.
    dkim_selector: str = field(default="", metadata={"parse": _parse_dns_name})
    dkim_domain: str = field(default="", metadata={"parse": _parse_dns_name})
    dkim_key_file: str = field(default="", metadata={"parse": _parse_str})
    # Delivery-event webhooks (app/services/webhooks.py); a provider left
    # empty has no endpoint. SES: the SNS topic ARNs allowed, comma-separated.
    webhook_ses_topic_arns: str = field(default="", metadata={"parse": _parse_str})
    webhook_sendgrid_public_key: str = field(default="", metadata={"parse": _parse_str})
    webhook_mailgun_signing_key: str = field(default="", metadata={"parse": _parse_str})
    webhook_postmark_credentials: str = field(default="", metadata={"parse": _parse_str})

    def __post_init__(self) -> None:
        """DKIM needs a selector, a domain and a key together: a partial set
        stops start-up naming what is missing."""
        given = [key for key in DKIM_SETTINGS if getattr(self, key)]
        missing = [key for key in DKIM_SETTINGS if not getattr(self, key)]
        if given and missing:
            raise ConfigError(
                f"{', '.join(missing)} not set: DKIM signing needs "
                f"{', '.join(DKIM_SETTINGS)} together (set {', '.join(given)})"
            )

    def secure_cookies(self) -> bool:
        """Whether cookies get the Secure flag (sent over HTTPS only)."""
        if self.cookie_secure == "auto":
            return self.site_url.startswith("https://")
        return self.cookie_secure == "always"

    def database_url_or_default(self) -> str:
        """The configured URL, or a SQLite file under the instance folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.instance_path).resolve() / 'sluice.db'}"


SETTING_NAMES = tuple(f.name for f in fields(Settings))


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


# Values never echoed in an error message: they end up in logs.
SECRET_SETTINGS = frozenset(
    {"secret_key", "admin_password", "webhook_mailgun_signing_key", "webhook_postmark_credentials"}
)


def _shown_value(key: str, raw: object) -> str:
    """The rejected value as an error message may show it: secrets hidden,
    a password inside a URL masked."""
    if key in SECRET_SETTINGS:
        return "(value hidden)"
    text = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", str(raw))
    return f"(got {text[:80]!r})"


def _parse_value(key: str, raw: object, source: str) -> Any:
    """Parse one value; ``source`` names where it came from, as the user wrote
    it (``environment variable SLUICE_DEFAULT_BATCH_SIZE``)."""
    parser = next(f for f in fields(Settings) if f.name == key).metadata["parse"]
    try:
        return parser(raw)
    except ValueError as error:
        raise ConfigError(f"{source}: {error} {_shown_value(key, raw)}") from None


def _read_toml(path: Path) -> Mapping[str, object]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"SLUICE_CONFIG: cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"SLUICE_CONFIG: {path} is not valid TOML: {error}") from None


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build ``Settings`` from the environment and the optional TOML file.

    ``overrides`` (used by tests and the CLI) win over both and are parsed too.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    config_file = environ.get("SLUICE_CONFIG")
    if config_file:
        for key, raw in _read_toml(Path(config_file)).items():
            if key not in SETTING_NAMES:
                raise ConfigError(f"config file key {key!r} is unknown")
            values[key] = _parse_value(key, raw, f"config file key {key!r}")

    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in SETTING_NAMES:
            raise ConfigError(f"environment variable {name} is unknown")
        values[key] = _parse_value(key, raw, f"environment variable {name}")

    for key, raw in overrides.items():
        if key not in SETTING_NAMES:
            raise ConfigError(f"setting {key!r} is unknown")
        values[key] = _parse_value(key, raw, f"setting {key!r}")

    return Settings(**values)


def ensure_secret_key(settings: Settings) -> str:
    """Return the configured secret key, or one generated once into the
    instance folder and reused on every later start (never a shipped default)."""
    if settings.secret_key:
        return settings.secret_key
    key_file = Path(settings.instance_path) / "secret_key"
    if key_file.exists():
        stored = key_file.read_text(encoding="ascii").strip()
        if stored:
            return stored
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    # O_EXCL: two processes starting at once must not write two different keys.
    try:
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text(encoding="ascii").strip()
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key
