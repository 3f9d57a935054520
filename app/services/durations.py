"""Durations as a person reads them, one way for every page and message."""

from __future__ import annotations


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 5 min``, ``2 days`` (rounded down)."""
    whole = max(0, int(seconds))
    if whole < 120:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 48 * 3600:
        hours, minutes = divmod(whole // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{whole // 86400} days"
