"""Template filters shared by the pages: times and durations, one way.

Every time is shown in the zone of the user who reads it (their choice on
``/account``, else the site's ``default_time_zone``) with the zone's
abbreviation or offset; ``display_zone()`` is that zone for this request,
and what the forms read typed times in (``app.services.time_zones``).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Flask, current_app, g, has_request_context
from flask_login import current_user

from app import app_settings
from app.services.durations import format_duration
from app.services.time_zones import TimeZoneError, format_in_zone, parse_time_zone


def default_zone(app: Flask) -> ZoneInfo:
    """The site's default zone (boot setting ``default_time_zone``)."""
    return parse_time_zone(app_settings(app).default_time_zone)


def _user_zone_name() -> str | None:
    if not current_user or not current_user.is_authenticated:
        return None
    name: str | None = getattr(current_user, "time_zone", None)
    return name


def display_zone() -> ZoneInfo:
    """The zone times are shown and read in for this request's user."""
    if not has_request_context():
        return default_zone(current_app)
    zone: ZoneInfo | None = g.get("sluice_display_zone")
    if zone is None:
        name = _user_zone_name()
        try:
            zone = parse_time_zone(name) if name else default_zone(current_app)
        except TimeZoneError:
            # A zone a later tzdata dropped: the site's default, not an error page.
            zone = default_zone(current_app)
        g.sluice_display_zone = zone
    return zone


def format_time(value: datetime | None, zone: ZoneInfo | None = None) -> str:
    """``2026-03-02 04:00:05 EST`` in ``zone`` (default: the reader's); an
    em dash for no time."""
    if value is None:
        return "—"
    return format_in_zone(value, zone or display_zone())


def init_formatting(app: Flask) -> None:
    app.add_template_filter(format_time, "time")
    app.add_template_filter(format_duration, "duration")
    app.add_template_global(display_zone, "display_zone")
