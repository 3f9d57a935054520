"""Recording accepted replies in a thread of their own, so the dispatcher's
main thread goes on building messages while the database writes.

Rules (besides those of ``app.services.dispatch_results``):

- **Its own session.** The writer thread opens its own session on the
  dispatcher's engine; a SQLAlchemy session is never shared between
  threads. Only accepted replies come here; every other result, and every
  other write of the tick, stays on the main thread's session. The two
  never touch the same item: an item has one result.
- **Committed right after the reply.** The thread takes every reply
  waiting (``put`` by the main thread as it arrives), records them with
  ``record_accepted`` in one transaction and commits, then takes the next
  group. A group is what arrived while the previous one was written: the
  slower the database, the larger the groups, never a growing backlog of
  round trips (one transaction per message cost a runner more time in
  round trips than building the message did).
- **Nothing in doubt is resent.** ``close`` waits until every reply put
  here is committed and returns their outcomes. A group that cannot be
  recorded is rolled back; later replies are not recorded either
  (``failure`` says why, so the main thread ends the tick, and ``close``
  hands over the error to raise once the tick has released what it never
  sent). Their items stay ``sending`` and their lease makes them
  ``interrupted``, as for a runner that died.
"""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy.orm import Session

from app.clock import Clock
from app.services.dispatch import Claim
from app.services.dispatch_results import ItemOutcome, record_accepted
from app.services.runtime_settings import RuntimeSettings
from app.services.transport import SendResult

log = logging.getLogger(__name__)

_Reply = tuple[Claim, SendResult]


class ResultWriter:
    """A thread that records accepted replies; ``close`` when done."""

    def __init__(self, session: Session, clock: Clock, runtime: RuntimeSettings) -> None:
        # The engine, never the session or a connection: those are this thread's.
        self._engine = session.get_bind().engine
        self._clock = clock
        self._runtime = runtime
        self._replies: queue.SimpleQueue[_Reply | None] = queue.SimpleQueue()
        self._outcomes: list[ItemOutcome] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sluice-results", daemon=True)
        self._thread.start()

    def put(self, claim: Claim, result: SendResult) -> None:
        """Hand over an accepted reply; it is committed as soon as the
        thread gets to it."""
        self._replies.put((claim, result))

    @property
    def failure(self) -> str:
        """Why replies can no longer be recorded; empty while they can."""
        error = self._error
        return "" if error is None else f"{type(error).__name__}: {error}"

    def close(self) -> tuple[list[ItemOutcome], BaseException | None]:
        """Wait until every reply handed over is recorded; their outcomes,
        and the error that stopped the recording, if one did."""
        self._replies.put(None)
        self._thread.join()
        return self._outcomes, self._error

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        with Session(self._engine) as session:
            done = False
            while not done:
                group, done = self._next_group()
                if group and self._error is None:
                    self._record(session, group)

    def _next_group(self) -> tuple[list[_Reply], bool]:
        """Every reply waiting (at least one, or the end); whether the end
        came."""
        group: list[_Reply] = []
        reply = self._replies.get()
        while reply is not None:
            group.append(reply)
            try:
                reply = self._replies.get_nowait()
            except queue.Empty:
                return group, False
        return group, True

    def _record(self, session: Session, group: list[_Reply]) -> None:
        try:
            self._outcomes += record_accepted(session, group, self._clock, self._runtime)
        except BaseException as error:  # raised in the main thread after close()
            session.rollback()
            self._error = error
            log.error("accepted replies not recorded (their items will be interrupted): %s", error)
