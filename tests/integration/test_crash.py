"""Kill -9 (issue 6): a runner process killed at 20 random moments of a
campaign and restarted after each kill never sends a message twice and
loses nothing; an interrupted item is sent again only after a person's
retry, which duplicates exactly the interrupted messages that had arrived.

The drill itself (``tests.crash_harness``) is shared with
``bench/crash.py``. Its kill moments come from a seed, printed and named in
every failure; ``CRASH_DRILL_SEED=<n>`` replays one.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

from flask import Flask
from sqlalchemy.orm import Session

from app import app_settings
from app.models import QueueItemStatus
from tests.crash_harness import CrashDrill, run_crash_drill

Q = QueueItemStatus


def test_a_runner_killed_at_random_moments_never_sends_twice_and_loses_nothing(
    app: Flask, session: Session, database_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CRASH_DRILL_SEED") or random.randrange(2**32))
    drill = CrashDrill(kills=20, seed=seed)

    result = run_crash_drill(session, app_settings(app), database_url, tmp_path, drill)

    replay = f"replay with CRASH_DRILL_SEED={seed}"
    killed = result.after_kills
    assert killed.duplicates == [], replay
    assert killed.lost == [], replay
    assert set(killed.statuses) <= {Q.SENT, Q.QUEUED, Q.INTERRUPTED}, replay
    assert sum(killed.statuses.values()) == result.recipients
    # The campaign outlasted the kills, and the kills hit both kinds of doubt.
    assert killed.statuses[Q.SENT] and killed.statuses[Q.QUEUED], killed.statuses
    assert killed.interrupted_received, f"no kill between arrival and commit; {replay}"
    assert killed.interrupted_not_received, f"no kill before a claim's sending; {replay}"
    assert killed.received == killed.statuses[Q.SENT] + len(killed.interrupted_received)

    retried = result.after_retry
    assert result.requeued == killed.interrupted
    assert retried.statuses == Counter({Q.SENT: result.recipients}), replay
    assert retried.lost == [], replay
    # A person's retry sends every interrupted item again: the ones that had
    # not arrived now have their one copy, the ones that had now have two.
    assert retried.duplicates == killed.interrupted_received, replay
    assert retried.copies == result.recipients + len(killed.interrupted_received)
