"""Template filters shared by the pages: times and durations, one way."""

from __future__ import annotations

from datetime import datetime

from flask import Flask

from app.services.durations import format_duration


def format_time(value: datetime | None) -> str:
    """``2026-03-02 09:00:05 UTC``; an em dash for no time."""
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def init_formatting(app: Flask) -> None:
    app.add_template_filter(format_time, "time")
    app.add_template_filter(format_duration, "duration")
