"""A bounce poll in a process of its own, for the test that kills it with a
real SIGKILL (``tests/integration/test_bounce_poll.py``).

``python -m tests.bounce_poll_process DATABASE_URL IMAP_URL INSTANCE_PATH``
builds the real app on the database and runs one ``poll_bounces`` with the
tests' ``RecordingHandler`` in batches of 5, under the runner id
``killed-runner``. After each commit it prints ``committed N`` and lingers
a moment, so that a kill after the Nth line lands between that commit and
what follows it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.clock import SystemClock
from app.extensions import current_session
from app.services.bounce_poll import PollOptions, poll_bounces
from tests.conftest import make_test_app
from tests.integration.test_bounce_poll import RecordingHandler

LINGER_SECONDS = 0.2


def main(database_url: str, imap_url: str, instance_path: str) -> None:
    app = make_test_app(database_url, Path(instance_path))
    with app.app_context():
        session = current_session()
        commits = 0

        def report(committed: Session) -> None:
            nonlocal commits
            commits += 1
            print(f"committed {commits}", flush=True)
            time.sleep(LINGER_SECONDS)

        event.listen(session, "after_commit", report)
        result = poll_bounces(
            session,
            imap_url,
            RecordingHandler(),
            clock=SystemClock(),
            runner="killed-runner",
            options=PollOptions(batch_size=5),
        )
        print(f"done: {result.describe()}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
