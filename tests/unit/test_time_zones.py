"""Time zones (app.services.time_zones): names checked against the IANA
list, times shown with the zone's abbreviation or offset, typed wall-clock
times converted to UTC across the DST changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.services.time_zones import (
    NonexistentLocalTime,
    TimeZoneError,
    format_in_zone,
    input_value,
    local_to_utc,
    parse_time_zone,
    time_zone_names,
)
from config import ConfigError, load_settings

NEW_YORK = parse_time_zone("America/New_York")


def test_the_choices_are_the_iana_names() -> None:
    names = time_zone_names()
    assert {"UTC", "America/New_York", "Europe/Paris", "Asia/Kolkata"} <= set(names)
    assert list(names) == sorted(names)


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "Mars/Olympus_Mons",
        "america/new_york",  # the names are case-sensitive
        "../../etc/passwd",
        "/usr/share/zoneinfo/UTC",
        "EST5EDT,M3.2.0,M11.1.0",
        "+02:00",
        "<script>alert(1)</script>",
        "Europe/Paris\x00",
        "A" * 10_000,
    ],
)
def test_anything_but_a_listed_name_is_refused(hostile: str) -> None:
    with pytest.raises(TimeZoneError, match="choose a time zone from the list"):
        parse_time_zone(hostile)


def test_times_are_shown_with_the_abbreviation_or_the_offset() -> None:
    winter = datetime(2026, 1, 15, 14, 0, 5, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 14, 0, 5, tzinfo=UTC)

    assert format_in_zone(winter, NEW_YORK) == "2026-01-15 09:00:05 EST"
    assert format_in_zone(summer, NEW_YORK) == "2026-07-15 10:00:05 EDT"
    assert format_in_zone(winter, parse_time_zone("UTC")) == "2026-01-15 14:00:05 UTC"
    # Sao Paulo's abbreviation is "-03": the offset is clearer.
    sao_paulo = parse_time_zone("America/Sao_Paulo")
    assert format_in_zone(winter, sao_paulo) == "2026-01-15 11:00:05 UTC-03:00"
    kolkata = parse_time_zone("Asia/Kolkata")
    assert format_in_zone(winter, kolkata) == "2026-01-15 19:30:05 IST"
    assert input_value(summer, NEW_YORK) == "2026-07-15T10:00"


def test_a_typed_time_is_read_in_the_zone() -> None:
    assert local_to_utc(datetime(2026, 5, 1, 9, 0), NEW_YORK) == datetime(
        2026, 5, 1, 13, 0, tzinfo=UTC
    )
    assert local_to_utc(datetime(2026, 1, 15, 9, 0), NEW_YORK) == datetime(
        2026, 1, 15, 14, 0, tzinfo=UTC
    )


def test_a_time_the_clocks_skip_is_refused() -> None:
    # 2026-03-08: New York goes from 02:00 EST straight to 03:00 EDT.
    with pytest.raises(NonexistentLocalTime, match="does not exist in America/New_York"):
        local_to_utc(datetime(2026, 3, 8, 2, 30), NEW_YORK)
    # Either side of the gap is fine.
    assert local_to_utc(datetime(2026, 3, 8, 1, 59), NEW_YORK) == datetime(
        2026, 3, 8, 6, 59, tzinfo=UTC
    )
    assert local_to_utc(datetime(2026, 3, 8, 3, 0), NEW_YORK) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )


def test_a_time_the_clocks_pass_twice_is_its_first_occurrence() -> None:
    # 2026-11-01: New York goes from 02:00 EDT back to 01:00 EST; 01:30
    # happens at 05:30 UTC (EDT) and again at 06:30 UTC (EST).
    assert local_to_utc(datetime(2026, 11, 1, 1, 30), NEW_YORK) == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC
    )


def test_an_aware_time_is_not_a_wall_clock_time() -> None:
    with pytest.raises(ValueError, match="without a zone"):
        local_to_utc(datetime(2026, 5, 1, 9, 0, tzinfo=UTC), NEW_YORK)


def test_the_site_default_is_a_checked_boot_setting() -> None:
    assert load_settings(environ={}).default_time_zone == "UTC"
    chosen = load_settings(environ={"SLUICE_DEFAULT_TIME_ZONE": "Europe/Paris"})
    assert chosen.default_time_zone == "Europe/Paris"
    with pytest.raises(ConfigError, match="SLUICE_DEFAULT_TIME_ZONE: expected an IANA time zone"):
        load_settings(environ={"SLUICE_DEFAULT_TIME_ZONE": "../etc/passwd"})
