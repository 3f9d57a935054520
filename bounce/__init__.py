"""Sluice's bounce library: bytes of a returned message in, facts out.

Pure (no Flask, no database, no app imports). ``parse`` reads a message,
``classify`` adds kind and reason, ``read`` does both. ``docs/bounces.md``
describes the detectors, the rule table and the measured figures.
"""

from __future__ import annotations

from bounce.classify import classify
from bounce.parse import parse
from bounce.report import BounceReport, RecipientReport, ReportKind


def read(raw: bytes) -> BounceReport:
    """``classify(parse(raw))``: never raises."""
    return classify(parse(raw))


__all__ = ["BounceReport", "RecipientReport", "ReportKind", "classify", "parse", "read"]
