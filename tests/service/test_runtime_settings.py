"""Runtime settings: seeded once from config, then changed only through a
validated, all-or-nothing update."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.models import DomainGroup, RuntimeSetting
from app.services.runtime_settings import (
    SPECS,
    RuntimeSettings,
    SettingsValidationError,
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from config import ConfigError, load_settings


@pytest.fixture
def seeded(app: Flask, session: Session, clock: FixedClock) -> RuntimeSettings:
    seed_runtime_settings(session, app_settings(app), clock)
    session.commit()
    return get_runtime_settings(session)


def test_seeding_takes_the_config_defaults(app: Flask, session: Session, clock: FixedClock) -> None:
    config = app_settings(app)
    assert sorted(seed_runtime_settings(session, config, clock)) == sorted(SPECS)
    session.commit()
    current = get_runtime_settings(session)
    assert current.max_per_hour == config.default_max_per_hour
    assert current.batch_size == config.default_batch_size
    assert current.tick_interval_seconds == config.default_tick_interval_seconds
    assert current.company_name == config.default_company_name == "Example Corp"
    assert current.postal_address == config.default_postal_address
    assert current.bounce_domain == "bounce.example.com"  # from SLUICE_BOUNCE_ADDRESS
    assert current.site_url == config.site_url
    assert current.open_tracking is False  # personal data: off until an admin turns it on
    assert current.mandatory_opt_out is True
    assert (
        current.max_attempts,
        current.smtp_connections,
        current.lease_seconds,
        current.retry_base_seconds,
    ) == (5, 4, 300, 300)
    # Per-domain pacing: no caps of its own until an admin sets them; a
    # rate-limit reply always throttles its group, first for 15 minutes.
    assert [getattr(current, key) for key in PACING_KEYS if key != "throttle_seconds"] == [0] * 8
    assert current.throttle_seconds == 900
    assert current.bounce_poll_interval_seconds == 300  # issue 7: every 5 minutes


def test_seeding_again_keeps_admin_changes(
    app: Flask, session: Session, clock: FixedClock, seeded: RuntimeSettings
) -> None:
    update_runtime_settings(session, {"max_per_hour": 50, "company_name": "Acme"}, clock)
    session.commit()
    assert seed_runtime_settings(session, app_settings(app), clock) == []
    session.commit()
    current = get_runtime_settings(session)
    assert (current.max_per_hour, current.company_name) == (50, "Acme")


def test_seeding_adds_only_a_missing_key(
    app: Flask, session: Session, clock: FixedClock, seeded: RuntimeSettings
) -> None:
    update_runtime_settings(session, {"batch_size": 7}, clock)
    session.execute(delete(RuntimeSetting).where(RuntimeSetting.key == "open_tracking"))
    session.commit()
    assert seed_runtime_settings(session, app_settings(app), clock) == ["open_tracking"]
    assert get_runtime_settings(session).batch_size == 7


DISPATCH_KEYS = ["lease_seconds", "max_attempts", "retry_base_seconds", "smtp_connections"]
PACING_KEYS = sorted(
    [f"pace_{group}_{kind}" for group in DomainGroup for kind in ("per_hour", "connections")]
    + ["throttle_seconds"]
)


def test_seeding_adds_the_dispatch_keys_to_an_older_database(
    app: Flask, session: Session, clock: FixedClock, seeded: RuntimeSettings
) -> None:
    update_runtime_settings(session, {"max_per_hour": 50}, clock)
    session.execute(delete(RuntimeSetting).where(RuntimeSetting.key.in_(DISPATCH_KEYS)))
    session.commit()
    assert sorted(seed_runtime_settings(session, app_settings(app), clock)) == DISPATCH_KEYS
    session.commit()
    current = get_runtime_settings(session)
    assert (current.max_per_hour, current.max_attempts, current.lease_seconds) == (50, 5, 300)


def test_seeding_adds_the_pacing_keys_to_an_older_database(
    app: Flask, session: Session, clock: FixedClock, seeded: RuntimeSettings
) -> None:
    update_runtime_settings(session, {"smtp_connections": 8}, clock)
    session.execute(delete(RuntimeSetting).where(RuntimeSetting.key.in_(PACING_KEYS)))
    session.commit()
    assert sorted(seed_runtime_settings(session, app_settings(app), clock)) == PACING_KEYS
    session.commit()
    current = get_runtime_settings(session)
    assert (current.smtp_connections, current.pace_gmail_per_hour) == (8, 0)


def test_a_pacing_cap_left_empty_means_no_cap_of_its_own(
    session: Session, clock: FixedClock, seeded: RuntimeSettings
) -> None:
    current = update_runtime_settings(
        session, {"pace_gmail_per_hour": "500", "pace_gmail_connections": 2}, clock
    )
    assert current.group_hourly_cap(DomainGroup.GMAIL) == 500
    assert current.group_connection_cap(DomainGroup.GMAIL) == 2
    current = update_runtime_settings(
        session, {"pace_gmail_per_hour": "", "pace_gmail_connections": None}, clock
    )
    assert current.group_hourly_cap(DomainGroup.GMAIL) == 0
    assert current.group_connection_cap(DomainGroup.GMAIL) == 0


@pytest.mark.parametrize(
    ("key", "lowest", "highest"),
    [
        ("pace_gmail_per_hour", 0, 10_000_000),
        ("pace_yahoo_connections", 0, 32),
        ("pace_other_per_hour", 0, 10_000_000),
        ("throttle_seconds", 60, 14_400),
        ("bounce_poll_interval_seconds", 30, 86_400),
        ("max_attempts", 1, 50),
        ("smtp_connections", 1, 32),
        ("lease_seconds", 30, 3600),
        ("retry_base_seconds", 10, 86_400),
    ],
)
def test_dispatch_settings_accept_their_bounds(
    session: Session,
    clock: FixedClock,
    seeded: RuntimeSettings,
    key: str,
    lowest: int,
    highest: int,
) -> None:
    assert getattr(update_runtime_settings(session, {key: lowest}, clock), key) == lowest
    assert getattr(update_runtime_settings(session, {key: str(highest)}, clock), key) == highest


def test_update_converts_and_saves(
    session: Session, clock: FixedClock, seeded: RuntimeSettings
) -> None:
    updated = update_runtime_settings(
        session,
        {
            "max_per_hour": " 500 ",
            "open_tracking": "yes",
            "site_url": "https://mail.example.com/",
            "bounce_domain": "Bounces.Example.COM",
        },
        clock,
    )
    session.commit()
    assert updated == get_runtime_settings(session)
    assert updated.max_per_hour == 500
    assert updated.open_tracking is True
    assert updated.site_url == "https://mail.example.com"
    assert updated.bounce_domain == "bounces.example.com"


# (key, value): each must be refused on its own, naming its key.
HOSTILE_VALUES: list[tuple[str, object]] = [
    ("max_per_hour", 10**30),
    ("max_per_hour", 0),
    ("max_per_hour", -5),
    ("max_per_hour", "-5"),
    ("max_per_hour", 2.5),
    ("max_per_hour", True),
    ("batch_size", "abc"),
    ("batch_size", None),
    ("tick_interval_seconds", 1),
    ("soft_bounce_threshold", False),
    ("open_tracking", "maybe"),
    ("open_tracking", 1),
    ("company_name", "Acme\r\nBcc: victim@example.org"),
    ("company_name", "x" * 201),
    ("company_name", 42),
    ("postal_address", "p" * 1001),
    ("postal_address", "1 Main St\x00"),
    ("site_url", "javascript:alert(1)"),
    ("site_url", "https://"),
    ("site_url", "ftp://files.example.com"),
    ("site_url", "https://example.com/?q=1"),
    ("site_url", "https://example.com\r\nX: y"),
    ("max_attempts", 0),
    ("max_attempts", 51),
    ("smtp_connections", 0),
    ("smtp_connections", 33),
    ("lease_seconds", 29),
    ("lease_seconds", 3601),
    ("retry_base_seconds", 9),
    ("retry_base_seconds", 86_401),
    ("pace_gmail_per_hour", -1),
    ("pace_gmail_per_hour", "ten"),
    ("pace_outlook_per_hour", 10_000_001),
    ("pace_yahoo_connections", 33),
    ("pace_other_connections", 1.5),
    ("throttle_seconds", 59),
    ("throttle_seconds", 14_401),
    ("throttle_seconds", ""),
    ("bounce_poll_interval_seconds", 29),
    ("bounce_poll_interval_seconds", 86_401),
    ("bounce_domain", "localhost"),
    ("bounce_domain", "bounce example.com"),
    ("not_a_setting", 1),
]


def test_hostile_values_are_rejected_by_field(
    session: Session, clock: FixedClock, seeded: RuntimeSettings
) -> None:
    # One database for all cases: a database per case would make this slow.
    for key, value in HOSTILE_VALUES:
        with pytest.raises(SettingsValidationError) as error:
            update_runtime_settings(session, {key: value}, clock)
        assert list(error.value.errors) == [key], (key, value)
    session.commit()
    assert get_runtime_settings(session) == seeded


def test_one_bad_field_saves_nothing_and_names_every_bad_one(
    session: Session, clock: FixedClock, seeded: RuntimeSettings
) -> None:
    with pytest.raises(SettingsValidationError) as error:
        update_runtime_settings(
            session,
            {
                "max_per_hour": 500,
                "batch_size": "abc",
                "site_url": "javascript:x",
                "company_name": "B",
            },
            clock,
        )
    assert sorted(error.value.errors) == ["batch_size", "site_url"]
    assert "batch_size" in str(error.value)
    session.commit()
    assert get_runtime_settings(session) == seeded


def test_unseeded_database_raises_a_clear_error(session: Session) -> None:
    assert session.scalar(select(func.count()).select_from(RuntimeSetting)) == 0
    with pytest.raises(LookupError, match="sluice init"):
        get_runtime_settings(session)


def test_invalid_config_default_is_refused_naming_the_key(
    session: Session, clock: FixedClock
) -> None:
    session.execute(delete(RuntimeSetting))
    settings = load_settings(environ={}, default_company_name="Example\r\nBcc: x@evil.test")
    with pytest.raises(ConfigError, match="company_name"):
        seed_runtime_settings(session, settings, clock)
