"""Time zones: each user reads and types times in their own zone, the
database keeps UTC. Pure (no database, no clock).

Rules:

- **A zone is an IANA name** that ``zoneinfo.available_timezones()`` lists
  (``Europe/Paris``, ``America/New_York``, ``UTC``). Anything else, however
  it is spelled (a path, a POSIX TZ string, an offset such as ``+02:00``,
  text over ``MAX_NAME_LENGTH``), is refused with ``TimeZoneError``: the
  name is checked against the list before ``ZoneInfo`` ever opens a file.
- **Shown times** carry the zone's abbreviation (``EST``, ``CEST``) or,
  for zones whose abbreviation is only a number (``-03``), the offset
  (``UTC-03:00``), so a reader never has to guess which clock is meant.
- **Typed times** (a ``datetime-local`` field, no zone) are read in the
  user's zone and converted to UTC. A time the clocks skip (spring forward:
  02:30 on the night New York moves from 02:00 to 03:00) does not exist
  and is refused with ``NonexistentLocalTime``; a time the clocks pass
  twice (fall back: 01:30 on the night New York moves from 02:00 back to
  01:00) is taken at its **first** occurrence (``fold=0``, the offset
  before the change), as Python, PostgreSQL and most calendars do.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

DEFAULT_TIME_ZONE = "UTC"
# The longest IANA name today is 32 characters (America/Argentina/ComodRivadavia).
MAX_NAME_LENGTH = 64
SHOWN_FORMAT = "%Y-%m-%d %H:%M:%S"
INPUT_FORMAT = "%Y-%m-%dT%H:%M"  # an <input type="datetime-local">'s value
_LETTERS = re.compile(r"[A-Za-z]+")


class TimeZoneError(ValueError):
    """A time zone name that is not in the IANA list."""


class NonexistentLocalTime(ValueError):
    """A local time the clocks skip (spring forward)."""


@functools.cache
def time_zone_names() -> tuple[str, ...]:
    """Every IANA zone name this system knows, sorted; the choices offered."""
    return tuple(sorted(available_timezones()))


def parse_time_zone(name: str) -> ZoneInfo:
    """The zone called ``name``; raises ``TimeZoneError`` for anything not
    in ``time_zone_names()``."""
    if len(name) > MAX_NAME_LENGTH or name not in _known_names():
        raise TimeZoneError("choose a time zone from the list, such as Europe/Paris or UTC")
    return ZoneInfo(name)


@functools.cache
def _known_names() -> frozenset[str]:
    return frozenset(time_zone_names())


def zone_label(value: datetime) -> str:
    """``EST``, ``UTC``, or ``UTC-03:00`` for a zone whose abbreviation is a number."""
    abbreviation = value.tzname() or ""
    if _LETTERS.fullmatch(abbreviation):
        return abbreviation
    return "UTC" + _offset_text(value.utcoffset() or timedelta(0))


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def format_in_zone(value: datetime, zone: ZoneInfo) -> str:
    """``2026-03-02 04:00:05 EST``: an aware time shown in ``zone``."""
    local = value.astimezone(zone)
    return f"{local.strftime(SHOWN_FORMAT)} {zone_label(local)}"


def input_value(value: datetime, zone: ZoneInfo) -> str:
    """An aware time as a ``datetime-local`` field's value in ``zone``."""
    return value.astimezone(zone).strftime(INPUT_FORMAT)


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC time of the naive wall-clock time ``local`` in ``zone`` (see
    the module's rules: a skipped time raises ``NonexistentLocalTime``, a
    repeated one is its first occurrence)."""
    if local.tzinfo is not None:
        raise ValueError("expected a wall-clock time without a zone")
    first = local.replace(tzinfo=zone, fold=0)
    as_utc = first.astimezone(UTC)
    # A skipped time does not survive the round trip: 02:30 comes back as 03:30.
    if as_utc.astimezone(zone).replace(tzinfo=None) != local:
        raise NonexistentLocalTime(
            f"{local.strftime('%Y-%m-%d %H:%M')} does not exist in {zone.key}: the clocks "
            "go forward at that hour; choose a time before or after the change"
        )
    return as_utc
