"""Several SMTP connections at once: a small thread pool, one ``Transport``
per thread.

One smtplib connection is bound by round trips, not CPU (BASELINES: ~5,000
msgs/s on one connection, ~6,000 on four threads), so a runner sends over
``smtp_connections`` connections together.

Rules:

- Worker threads only talk SMTP. They never touch the database: a SQLAlchemy
  session is not thread-safe, so the dispatcher's main thread builds every
  message, submits it here, and commits each result as it comes back
  (``completed``), one transaction per reply. A result is therefore still
  committed right after its SMTP reply, never batched across the
  conversation.
- Each thread opens its own transport lazily (``transport_factory()``) and
  keeps it for the pool's life, so its connection is reused message after
  message and never shared between threads; ``close`` closes them all.
- A job carries a deadline (the claim's lease expiry). A worker that picks a
  job up after its deadline does not send it and reports ``result=None``:
  an item whose lease ran out may already be ``interrupted``, and nothing
  interrupted is handed to SMTP without a person's say.
- ``cancel_waiting`` withdraws the jobs no worker has started (the tick ends
  early: 421, repeated connection failures, an authentication failure; or,
  given a filter, only some: a throttled domain group's); jobs already in
  a conversation finish and report normally.
- A transport that raises (it should not: ``SmtpTransport`` turns SMTP and
  socket errors into results) reports ``error``; the message is then in
  doubt and the caller must leave it to the lease (it becomes
  ``interrupted``), never retry it on its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from app.clock import Clock
from app.services.transport import SendResult, Transport

TransportFactory = Callable[[], Transport]


@dataclass(frozen=True)
class SendJob:
    """One message to hand to SMTP; ``key`` is the caller's handle (the
    queue item id)."""

    key: int
    message: bytes
    envelope_from: str
    recipient: str
    deadline: datetime | None = None


@dataclass(frozen=True)
class JobResult:
    """What became of a job: ``result`` is the server's answer; None with
    ``error`` empty means it was not sent (its deadline had passed); None
    with ``error`` set means the transport raised and the message is in
    doubt."""

    job: SendJob
    result: SendResult | None
    error: str = ""

    @property
    def handed_to_smtp(self) -> bool:
        return self.result is not None or bool(self.error)


class TransportPool:
    """``connections`` worker threads, each with its own transport."""

    def __init__(self, transport_factory: TransportFactory, connections: int, clock: Clock) -> None:
        if connections < 1:
            raise ValueError("a transport pool needs at least one connection")
        self._factory = transport_factory
        self._clock = clock
        self._executor = ThreadPoolExecutor(
            max_workers=connections, thread_name_prefix="sluice-smtp"
        )
        self._local = threading.local()
        self._transports: list[Transport] = []
        self._transports_lock = threading.Lock()
        self._pending: dict[Future[JobResult], SendJob] = {}
        self._finished: queue.SimpleQueue[Future[JobResult]] = queue.SimpleQueue()

    # ------------------------------------------------------------ main thread

    def submit(self, job: SendJob) -> None:
        future = self._executor.submit(self._run, job)
        self._pending[future] = job
        future.add_done_callback(self._finished.put)

    @property
    def pending(self) -> int:
        """Jobs submitted whose result has not been collected yet."""
        return len(self._pending)

    def completed(self, *, block: bool) -> list[JobResult]:
        """The results that have arrived since the last call, in the order
        they finished; with ``block``, waits until at least one has (an
        empty list only when nothing is pending)."""
        results: list[JobResult] = []
        while self._pending:
            try:
                # Finished futures arrive through a queue (their done
                # callback): ``concurrent.futures.wait`` over every pending
                # future cost more than the rest of a message's handling.
                future = self._finished.get(block=block and not results)
            except queue.Empty:
                break
            job = self._pending.pop(future, None)
            if job is None or future.cancelled():  # withdrawn by cancel_waiting
                continue
            error = future.exception()
            if error is not None:
                results.append(JobResult(job, None, f"{type(error).__name__}: {error}"))
            else:
                results.append(future.result())
        return results

    def cancel_waiting(self, which: Callable[[SendJob], bool] | None = None) -> list[SendJob]:
        """Withdraw the jobs no worker has started (only those ``which``
        selects, when given); returns them."""
        withdrawn = []
        for future, job in list(self._pending.items()):
            if (which is None or which(job)) and future.cancel():
                del self._pending[future]
                withdrawn.append(job)
        return withdrawn

    def close(self) -> None:
        """Wait for running conversations, then close every connection."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._transports_lock:
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()

    def __enter__(self) -> TransportPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ worker threads

    def _transport(self) -> Transport:
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._factory()
            self._local.transport = transport
            with self._transports_lock:
                self._transports.append(transport)
        return transport

    def _run(self, job: SendJob) -> JobResult:
        if job.deadline is not None and self._clock.now() >= job.deadline:
            return JobResult(job, None)
        result = self._transport().send(job.message, job.envelope_from, job.recipient)
        return JobResult(job, result)
