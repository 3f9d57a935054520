"""Waiting for real work done by another thread or process.

Simulated time is never waited for: tests move an injected clock. What is
waited for here is real progress (a worker process sending, a runner
stopping), polled until it shows or a deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class NotInTime(AssertionError):
    """The awaited progress did not show before the deadline."""


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    interval: float = 0.05,
    check: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition`` every ``interval`` seconds until it holds; raise
    ``NotInTime`` naming ``what`` after ``timeout`` seconds. ``check`` runs
    each round and may raise to give up early (a process that died)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise NotInTime(f"not within {timeout} s: {what}")
        time.sleep(interval)
