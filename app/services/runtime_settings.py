"""Settings an administrator changes at run time, stored in the database.

Each key is declared once in ``SPECS`` with its validator; the defaults come
from boot-time config (``config.Settings``) the first time the database is
seeded, after which the database is the only source. ``update_runtime_settings``
validates every change before writing any: one bad field rejects the whole
update, with an error per field, and nothing is half-saved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.clock import Clock
from app.models import DomainGroup, RuntimeSetting
from config import ConfigError, Settings


class SettingsValidationError(ValueError):
    """One message per rejected field, keyed by field name."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))


@dataclass(frozen=True)
class RuntimeSettings:
    max_per_hour: int
    batch_size: int
    tick_interval_seconds: int
    mandatory_opt_out: bool
    open_tracking: bool
    verp_enabled: bool
    bounce_domain: str
    soft_bounce_threshold: int
    soft_bounce_window_days: int
    site_url: str
    company_name: str
    postal_address: str
    max_attempts: int
    smtp_connections: int
    lease_seconds: int
    retry_base_seconds: int
    # Per-domain pacing (``app.services.pacing``): 0 means no cap of the
    # group's own (the global quota, or all the runner's connections).
    pace_gmail_per_hour: int
    pace_gmail_connections: int
    pace_yahoo_per_hour: int
    pace_yahoo_connections: int
    pace_outlook_per_hour: int
    pace_outlook_connections: int
    pace_other_per_hour: int
    pace_other_connections: int
    throttle_seconds: int
    # How often the bounce-poll job reads the bounce mailbox.
    bounce_poll_interval_seconds: int

    def group_hourly_cap(self, group: DomainGroup) -> int:
        """The group's hourly cap; 0 when only the global quota applies."""
        value: int = getattr(self, f"pace_{group.value}_per_hour")
        return value

    def group_connection_cap(self, group: DomainGroup) -> int:
        """The group's cap on simultaneous conversations per runner; 0 for none."""
        value: int = getattr(self, f"pace_{group.value}_connections")
        return value


Validator = Callable[[object], Any]


def _whole_number(minimum: int, maximum: int) -> Validator:
    def validate(value: object) -> int:
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int):
            raise ValueError("must be a whole number")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return value

    return validate


def _cap(maximum: int) -> Validator:
    """A whole number from 0 to ``maximum``, where empty also means 0 ("no
    cap of its own"): an admin form may leave the field blank."""
    whole_number = _whole_number(0, maximum)

    def validate(value: object) -> int:
        if value is None or (isinstance(value, str) and not value.strip()):
            return 0
        result: int = whole_number(value)
        return result

    return validate


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _text(max_length: int) -> Validator:
    def validate(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("must be text")
        text = value.strip()
        if len(text) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if "\x00" in text:
            raise ValueError("must not contain NUL characters")
        return text

    return validate


def _single_line(max_length: int) -> Validator:
    base = _text(max_length)

    def validate(value: object) -> str:
        text: str = base(value)
        if "\r" in text or "\n" in text:
            raise ValueError("must be a single line")
        return text

    return validate


def _site_url(value: object) -> str:
    text: str = _single_line(2000)(value)
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return text.rstrip("/")


def _domain(value: object) -> str:
    text: str = _single_line(253)(value)
    labels = text.lower().split(".") if text else []
    if text and (
        len(labels) < 2
        or not all(label and len(label) <= 63 for label in labels)
        or not all(ch.isalnum() or ch in "-." for ch in text)
    ):
        raise ValueError("must be a domain name such as bounces.example.com")
    return text.lower()


@dataclass(frozen=True)
class SettingSpec:
    validate: Validator
    seed: Callable[[Settings], Any]
    label: str


SPECS: dict[str, SettingSpec] = {
    "max_per_hour": SettingSpec(
        _whole_number(1, 10_000_000), lambda s: s.default_max_per_hour, "Max emails per hour"
    ),
    "batch_size": SettingSpec(
        _whole_number(1, 100_000), lambda s: s.default_batch_size, "Batch size per tick"
    ),
    "tick_interval_seconds": SettingSpec(
        _whole_number(5, 86_400),
        lambda s: s.default_tick_interval_seconds,
        "Tick interval (seconds)",
    ),
    "mandatory_opt_out": SettingSpec(_flag, lambda s: True, "Mandatory opt-out link"),
    # Open tracking is off by default (SPEC §2): pixels are personal data.
    "open_tracking": SettingSpec(_flag, lambda s: False, "Open tracking"),
    "verp_enabled": SettingSpec(_flag, lambda s: True, "VERP return addresses"),
    "bounce_domain": SettingSpec(
        _domain, lambda s: s.bounce_address.rpartition("@")[2], "Bounce domain"
    ),
    "soft_bounce_threshold": SettingSpec(
        _whole_number(1, 1000), lambda s: 3, "Soft bounces before suppression"
    ),
    "soft_bounce_window_days": SettingSpec(
        _whole_number(1, 365), lambda s: 30, "Soft-bounce window (days)"
    ),
    "site_url": SettingSpec(_site_url, lambda s: s.site_url, "Site URL"),
    "company_name": SettingSpec(
        _single_line(200), lambda s: s.default_company_name, "Company name"
    ),
    "postal_address": SettingSpec(
        _text(1000), lambda s: s.default_postal_address, "Postal address"
    ),
    # Dispatch: a 4xx or dropped connection is retried with back-off
    # (retry_base_seconds, doubling) up to max_attempts, then failed.
    "max_attempts": SettingSpec(_whole_number(1, 50), lambda s: 5, "Attempts per message"),
    "smtp_connections": SettingSpec(
        _whole_number(1, 32), lambda s: 4, "SMTP connections per runner"
    ),
    # A claimed item whose lease ran out is interrupted, never resent silently.
    "lease_seconds": SettingSpec(_whole_number(30, 3600), lambda s: 300, "Claim lease (seconds)"),
    "retry_base_seconds": SettingSpec(
        _whole_number(10, 86_400), lambda s: 300, "First retry delay (seconds)"
    ),
    **{
        f"pace_{group.value}_{kind}": SettingSpec(_cap(maximum), lambda s: 0, label % group.label)
        for group in DomainGroup
        for kind, maximum, label in (
            ("per_hour", 10_000_000, "%s: emails per hour (0 = the global quota only)"),
            ("connections", 32, "%s: SMTP connections per runner (0 = all)"),
        )
    },
    # A rate-limit reply throttles its domain group this long, doubling on
    # repeats up to app.services.pacing.MAX_THROTTLE.
    "throttle_seconds": SettingSpec(
        _whole_number(60, 14_400), lambda s: 900, "Domain throttle after a rate limit (seconds)"
    ),
    # Issue 7: every 5 minutes by default; at least 30 s (a poll reconnects
    # with back-off inside its run), at most a day.
    "bounce_poll_interval_seconds": SettingSpec(
        _whole_number(30, 86_400), lambda s: 300, "Bounce mailbox poll interval (seconds)"
    ),
}

assert set(SPECS) == {f.name for f in fields(RuntimeSettings)}


def seed_runtime_settings(session: Session, settings: Settings, clock: Clock) -> list[str]:
    """Store the config default for every key not yet in the database; keys
    already there are left alone. Returns the keys seeded.

    A default that fails the setting's own validator raises ``ConfigError``
    naming the key: config seeds obey the same rules as an administrator.
    """
    existing = set(session.scalars(select(RuntimeSetting.key)))
    seeded = []
    for key, spec in SPECS.items():
        if key in existing:
            continue
        try:
            value = spec.validate(spec.seed(settings))
        except ValueError as error:
            raise ConfigError(f"the configured default for {key}: {error}") from None
        session.add(RuntimeSetting(key=key, value=value, updated_at=clock.now()))
        seeded.append(key)
    session.flush()
    return seeded


def get_runtime_settings(session: Session) -> RuntimeSettings:
    """Read all runtime settings. A missing key means the database was not
    seeded (``sluice init``) and is an error, not a silent default."""
    stored = {row.key: row.value for row in session.scalars(select(RuntimeSetting))}
    missing = [key for key in SPECS if key not in stored]
    if missing:
        raise LookupError(f"runtime settings missing: {', '.join(missing)}; run `sluice init`")
    return RuntimeSettings(**{key: stored[key] for key in SPECS})


def validate_changes(changes: Mapping[str, object]) -> dict[str, Any]:
    """Validate every change; raise ``SettingsValidationError`` naming each bad field."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for key, raw in changes.items():
        spec = SPECS.get(key)
        if spec is None:
            errors[key] = "unknown setting"
            continue
        try:
            clean[key] = spec.validate(raw)
        except ValueError as error:
            errors[key] = str(error)
    if errors:
        raise SettingsValidationError(errors)
    return clean


def update_runtime_settings(
    session: Session, changes: Mapping[str, object], clock: Clock
) -> RuntimeSettings:
    """Apply ``changes`` all together or not at all."""
    clean = validate_changes(changes)
    rows = {row.key: row for row in session.scalars(select(RuntimeSetting))}
    for key, value in clean.items():
        row = rows.get(key)
        if row is None:
            session.add(RuntimeSetting(key=key, value=value, updated_at=clock.now()))
        elif row.value != value:
            row.value = value
            row.updated_at = clock.now()
    session.flush()
    return get_runtime_settings(session)
