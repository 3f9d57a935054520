"""Several SMTP connections at once, driven from the caller's thread.

One SMTP connection is bound by round trips, not CPU (BASELINES: ~5,000
msgs/s on one connection), so a runner sends over ``smtp_connections``
connections together. They are driven by one event loop (``selectors``)
in the dispatcher's own thread, over non-blocking sockets: while a
connection waits for its reply, the thread builds the next message. An
earlier version gave each connection a thread running smtplib; handing
every message to a thread and its result back, and the threads' contention
for the GIL, cost more CPU than building the message (docs/performance.md).

Rules:

- **Nothing here touches the database.** The caller submits built messages
  and records each result it collects (``completed``), right after its
  reply.
- **Connections** are ``SmtpTransport`` objects, one per slot, opened
  lazily (greeting, EHLO, STARTTLS, AUTH: blocking, through smtplib, with
  its timeout; a failure there is the job's result, classified as
  ``SmtpTransport.send`` does) and reused message after message. Only the
  transactions (MAIL, RCPT, DATA, the body, RSET after a refusal) go
  through the loop, pipelined when the relay offers PIPELINING (RFC 2920),
  one command at a time otherwise, every reply classified as
  ``SmtpTransport`` does. A transport of another kind (a test's) is called
  synchronously, one message at a time.
- **Timeouts**: a connection waiting longer than the relay's timeout for
  its reply is dropped and the message is ``temporary`` (no reply), like a
  dropped connection.
- A job carries a deadline (the claim's lease expiry). A job whose turn
  comes after its deadline is not sent and reports ``result=None``: an
  item whose lease ran out may already be ``interrupted``, and nothing
  interrupted is handed to SMTP without a person's say.
- ``cancel_waiting`` withdraws the jobs no connection has started (the tick
  ends early: 421, repeated connection failures, an authentication
  failure; or, given a filter, only some: a throttled domain group's); jobs
  already in a conversation finish and report normally.
- A transport that raises, or a fault in the loop itself, reports
  ``error``: the message is then in doubt and the caller must leave it to
  the lease (it becomes ``interrupted``), never retry it on its own.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from app.clock import Clock
from app.services.transport import (
    SendOutcome,
    SendResult,
    SmtpTransport,
    Transaction,
    Transport,
)

TransportFactory = Callable[[], Transport]

_RECEIVE_BYTES = 65536
_MAX_LINE = 8192  # as smtplib: a longer reply line is not SMTP


@dataclass(frozen=True)
class SendJob:
    """One message to hand to SMTP; ``key`` is the caller's handle (the
    queue item id)."""

    key: int
    message: bytes
    envelope_from: str
    recipient: str
    deadline: datetime | None = None
    dot_lines: bool = True  # False: no line of ``message`` starts with "."


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


class _Slot:
    """One connection of the pool and the conversation under way on it."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.job: SendJob | None = None
        self.transaction: Transaction | None = None
        self.resetting = False  # an RSET awaits its reply
        self.inbox = b""
        self.outbox = b""
        self.lines: list[str] = []  # of a multi-line reply
        self.wait_until = 0.0  # monotonic: when the awaited reply is late
        self.registered: selectors.SelectorKey | None = None

    @property
    def busy(self) -> bool:
        return self.job is not None or self.resetting


class TransportPool:
    """``connections`` SMTP connections driven by one event loop."""

    def __init__(self, transport_factory: TransportFactory, connections: int, clock: Clock) -> None:
        if connections < 1:
            raise ValueError("a transport pool needs at least one connection")
        self._factory = transport_factory
        self._clock = clock
        self._slots: list[_Slot] = []
        self._connections = connections
        self._selector = selectors.DefaultSelector()
        self._waiting: collections.deque[SendJob] = collections.deque()
        self._results: list[JobResult] = []
        self._in_conversation = 0

    @property
    def pending(self) -> int:
        """Jobs submitted whose result has not been collected yet."""
        return len(self._waiting) + self._in_conversation + len(self._results)

    def submit(self, job: SendJob) -> None:
        self._waiting.append(job)
        self._start_waiting()

    def completed(self, *, block: bool) -> list[JobResult]:
        """The results that have arrived since the last call, in the order
        they finished; with ``block``, waits until at least one has (an
        empty list only when nothing is pending)."""
        self._poll(0.0)
        while block and not self._results and self.pending:
            self._poll(self._next_timeout())
        results, self._results = self._results, []
        return results

    def cancel_waiting(self, which: Callable[[SendJob], bool] | None = None) -> list[SendJob]:
        """Withdraw the jobs no connection has started (only those ``which``
        selects, when given); returns them."""
        withdrawn = [job for job in self._waiting if which is None or which(job)]
        if withdrawn:
            chosen = set(map(id, withdrawn))
            self._waiting = collections.deque(job for job in self._waiting if id(job) not in chosen)
        return withdrawn

    def close(self) -> None:
        """Finish the conversations under way, then close every connection."""
        self._waiting.clear()
        with contextlib.suppress(Exception):
            while any(slot.busy for slot in self._slots):
                self._poll(self._next_timeout())
        for slot in self._slots:
            self._unregister(slot)
            if slot.busy:
                self._drop(slot)
            else:
                self._blocking(slot)
            slot.transport.close()
        self._slots = []
        self._selector.close()

    def __enter__(self) -> TransportPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ starting jobs

    def _start_waiting(self) -> None:
        while self._waiting:
            slot = self._idle_slot()
            if slot is None:
                return
            self._start(slot, self._waiting.popleft())

    def _idle_slot(self) -> _Slot | None:
        for slot in self._slots:
            if not slot.busy:
                return slot
        if len(self._slots) < self._connections:
            self._slots.append(_Slot(self._factory()))
            return self._slots[-1]
        return None

    def _start(self, slot: _Slot, job: SendJob) -> None:
        if job.deadline is not None and self._clock.now() >= job.deadline:
            self._results.append(JobResult(job, None))
            return
        transport = slot.transport
        try:
            if not isinstance(transport, SmtpTransport):
                self._results.append(JobResult(job, transport.send(*_arguments(job))))
                return
            failure = transport.open()
            if failure is not None:
                self._results.append(JobResult(job, failure))
                return
            connection = transport.connection
            assert connection is not None and connection.sock is not None
            if connection.sock.gettimeout() != 0.0:  # once a connection: a system call
                connection.sock.setblocking(False)
            transaction = Transaction(
                job.message,
                job.envelope_from,
                job.recipient,
                pipelining=connection.has_extn("pipelining"),
                dot_lines=job.dot_lines,
            )
        except Exception as error:  # a fault of ours: the message is in doubt
            self._results.append(JobResult(job, None, f"{type(error).__name__}: {error}"))
            return
        slot.job, slot.transaction = job, transaction
        self._in_conversation += 1
        self._send(slot, transaction.opening())

    # ------------------------------------------------------------ the loop

    def _next_timeout(self) -> float:
        waits = [slot.wait_until for slot in self._slots if slot.busy]
        return max(0.0, min(waits) - time.monotonic()) if waits else 0.0

    def _poll(self, timeout: float) -> None:
        if self._in_conversation or any(slot.resetting for slot in self._slots):
            for key, events in self._selector.select(timeout):
                slot: _Slot = key.data
                try:
                    if events & selectors.EVENT_WRITE:
                        self._flush(slot)
                    if events & selectors.EVENT_READ:
                        if slot.busy:
                            self._receive(slot)
                        else:  # closed, or a notice (e.g. 421) before closing
                            self._drop(slot)
                except (OSError, EOFError) as error:
                    self._lost(slot, str(error) or type(error).__name__)
                except Exception as error:  # a fault of ours
                    self._fault(slot, error)
            self._expire()
        self._start_waiting()

    def _expire(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.busy and now >= slot.wait_until:
                self._lost(slot, "timed out waiting for the server's reply")

    def _send(self, slot: _Slot, data: bytes) -> None:
        slot.wait_until = time.monotonic() + _timeout(slot.transport)
        slot.outbox += data
        try:
            self._flush(slot)
        except OSError as error:
            self._lost(slot, str(error) or type(error).__name__)

    def _flush(self, slot: _Slot) -> None:
        sock = _socket(slot)
        while slot.outbox:
            try:
                sent = sock.send(slot.outbox)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                break
            slot.outbox = slot.outbox[sent:]
        self._register(slot)

    def _receive(self, slot: _Slot) -> None:
        sock = _socket(slot)
        while True:
            try:
                data = sock.recv(_RECEIVE_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not data:
                raise EOFError("the server closed the connection")
            slot.inbox += data
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                break
        while slot.busy and b"\n" in slot.inbox:
            line, _, slot.inbox = slot.inbox.partition(b"\n")
            self._line(slot, line.rstrip(b"\r"))
        if len(slot.inbox) > _MAX_LINE:
            raise EOFError("the server's reply line is too long")

    def _line(self, slot: _Slot, line: bytes) -> None:
        """One reply line (RFC 5321 §4.2: ``250-`` goes on, ``250 `` ends)."""
        slot.lines.append(line[4:].decode("utf-8", "replace"))
        if line[3:4] == b"-":
            return
        text, slot.lines = "\n".join(slot.lines), []
        try:
            code = int(line[:3])
        except ValueError:
            code = -1  # as smtplib: not a reply; classified below as refused
        if slot.resetting:
            slot.resetting = False
            if code != 250:
                self._drop(slot)
            return
        transaction = slot.transaction
        assert transaction is not None
        following = transaction.on_reply(code, text)
        if following is None:
            self._done(slot, transaction)
        elif following:
            self._send(slot, following)
        else:
            slot.wait_until = time.monotonic() + _timeout(slot.transport)

    def _done(self, slot: _Slot, transaction: Transaction) -> None:
        assert slot.job is not None and transaction.result is not None
        self._finished(slot, JobResult(slot.job, transaction.result))
        if transaction.drop:
            self._drop(slot)
        elif transaction.reset:
            slot.resetting = True
            self._send(slot, b"RSET\r\n")

    def _finished(self, slot: _Slot, result: JobResult) -> None:
        slot.job, slot.transaction = None, None
        self._in_conversation -= 1
        self._results.append(result)

    def _lost(self, slot: _Slot, reason: str) -> None:
        """No reply will come: nothing was accepted, so the message may be
        tried again (``temporary``, no code), at the stage it was lost."""
        transaction, job = slot.transaction, slot.job
        if transaction is not None and job is not None:
            result = transaction.result or SendResult(
                SendOutcome.TEMPORARY, None, reason[:1000], transaction.stage
            )
            self._finished(slot, JobResult(job, result))
        self._drop(slot)

    def _fault(self, slot: _Slot, error: Exception) -> None:
        if slot.job is not None:
            self._finished(slot, JobResult(slot.job, None, f"{type(error).__name__}: {error}"))
        self._drop(slot)

    def _drop(self, slot: _Slot) -> None:
        self._unregister(slot)
        slot.resetting, slot.inbox, slot.outbox, slot.lines = False, b"", b"", []
        if isinstance(slot.transport, SmtpTransport):
            slot.transport.drop()

    def _blocking(self, slot: _Slot) -> None:
        """Give the connection back to smtplib (for QUIT)."""
        transport = slot.transport
        if isinstance(transport, SmtpTransport) and transport.connection is not None:
            sock = transport.connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.settimeout(transport.settings.timeout)

    def _register(self, slot: _Slot) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if slot.outbox else 0)
        sock = _socket(slot)
        if slot.registered is None or slot.registered.fileobj is not sock:
            self._unregister(slot)
            slot.registered = self._selector.register(sock, events, slot)
        elif slot.registered.events != events:
            slot.registered = self._selector.modify(sock, events, slot)

    def _unregister(self, slot: _Slot) -> None:
        if slot.registered is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(slot.registered.fileobj)
            slot.registered = None


def _arguments(job: SendJob) -> tuple[bytes, str, str]:
    return job.message, job.envelope_from, job.recipient


def _socket(slot: _Slot) -> socket.socket:
    transport = slot.transport
    assert isinstance(transport, SmtpTransport) and transport.connection is not None
    sock = transport.connection.sock
    if sock is None:
        raise OSError("the connection is closed")
    return sock


def _timeout(transport: Transport) -> float:
    return transport.settings.timeout if isinstance(transport, SmtpTransport) else 30.0
