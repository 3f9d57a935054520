"""TransportPool: several SMTP connections driven by one event loop, against
real servers (aiosmtpd, and a raw socket server that stalls or hangs up).
What each reply means is tested through the pool in test_transport.py."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from app.clock import FixedClock, SystemClock
from app.services.transport import SendOutcome, SendResult, SmtpSettings, SmtpStage, SmtpTransport
from app.services.transport_pool import JobResult, SendJob, TransportPool
from tests.smtp_server import RunningServer, smtp_server

MESSAGE = b"From: a@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.fixture(params=[False, True], ids=["plain", "pipelining"])
def server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with smtp_server(pipelining=request.param) as running:
        yield running


def job(key: int, recipient: str = "", **extra: object) -> SendJob:
    return SendJob(key, MESSAGE, "bounces@example.com", recipient or f"r{key}@example.org", **extra)  # type: ignore[arg-type]


def drain(pool: TransportPool) -> list[JobResult]:
    results: list[JobResult] = []
    while pool.pending:
        results += pool.completed(block=True)
    return results


def test_messages_go_out_over_several_connections_each_reused(server: RunningServer) -> None:
    settings = SmtpSettings(server.host, server.port, timeout=5)
    with TransportPool(lambda: SmtpTransport(settings), 3, SystemClock()) as pool:
        for key in range(30):
            pool.submit(job(key))
        results = drain(pool)

    assert sorted(result.job.key for result in results) == list(range(30))
    assert all(result.result is not None and result.result.accepted for result in results)
    assert server.handler.sessions == 3
    assert sorted(m.recipients[0] for m in server.handler.messages) == sorted(
        f"r{key}@example.org" for key in range(30)
    )


def test_a_refused_recipient_does_not_stop_the_connection(server: RunningServer) -> None:
    server.handler.rcpt_replies["bad@example.org"] = "550 5.1.1 No such user"
    settings = SmtpSettings(server.host, server.port, timeout=5)
    with TransportPool(lambda: SmtpTransport(settings), 1, SystemClock()) as pool:
        for key, address in enumerate(["a@example.org", "bad@example.org", "c@example.org"]):
            pool.submit(job(key, address))
        results = {result.job.recipient: result.result for result in drain(pool)}

    refused = results["bad@example.org"]
    assert refused is not None and refused.outcome is SendOutcome.REJECTED_RECIPIENT
    assert refused.code == 550 and refused.stage is SmtpStage.RCPT
    assert results["a@example.org"].accepted and results["c@example.org"].accepted  # type: ignore[union-attr]
    assert [m.recipients for m in server.handler.messages] == [["a@example.org"], ["c@example.org"]]
    assert server.handler.sessions == 1


def test_a_job_whose_deadline_passed_is_not_sent(server: RunningServer) -> None:
    clock = FixedClock(datetime(2026, 11, 26, 9, 0, tzinfo=UTC))
    settings = SmtpSettings(server.host, server.port, timeout=5)
    with TransportPool(lambda: SmtpTransport(settings), 1, clock) as pool:
        pool.submit(job(1, deadline=clock.now() - timedelta(seconds=1)))
        pool.submit(job(2, deadline=clock.now() + timedelta(seconds=60)))
        results = {result.job.key: result for result in drain(pool)}

    assert results[1].result is None and not results[1].handed_to_smtp
    assert results[2].result is not None and results[2].result.accepted
    assert [m.recipients for m in server.handler.messages] == [["r2@example.org"]]


def test_cancel_waiting_withdraws_only_jobs_not_started(server: RunningServer) -> None:
    settings = SmtpSettings(server.host, server.port, timeout=5)
    with TransportPool(lambda: SmtpTransport(settings), 1, SystemClock()) as pool:
        for key in range(4):
            pool.submit(job(key, f"{'odd' if key % 2 else 'even'}{key}@example.org"))
        withdrawn = pool.cancel_waiting(lambda sent: sent.recipient.startswith("odd"))
        results = drain(pool)

    # Job 0 was in its conversation at once (one connection); 1 and 3 waited.
    assert [sent.key for sent in withdrawn] == [1, 3]
    assert sorted(result.job.key for result in results) == [0, 2]
    assert sorted(m.recipients[0] for m in server.handler.messages) == [
        "even0@example.org",
        "even2@example.org",
    ]


@contextmanager
def silent_relay(*, hang_up_after_data: bool = False) -> Iterator[int]:
    """A relay that greets and answers EHLO, then never answers MAIL (or,
    with ``hang_up_after_data``, takes the commands and closes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connections.append(connection)
            connection.sendall(b"220 silent ESMTP\r\n")
            reader = connection.makefile("rb")
            reader.readline()  # EHLO
            connection.sendall(b"250-silent\r\n250 PIPELINING\r\n")
            if hang_up_after_data:
                for _ in range(3):
                    reader.readline()
                connection.sendall(b"250 ok\r\n250 ok\r\n354 go on\r\n")
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for connection in connections:
            connection.close()


def test_a_relay_that_stops_answering_times_out_as_temporary() -> None:
    with silent_relay() as port:
        settings = SmtpSettings("127.0.0.1", port, timeout=0.5)
        with TransportPool(lambda: SmtpTransport(settings), 1, SystemClock()) as pool:
            pool.submit(job(1))
            [outcome] = drain(pool)

    result = outcome.result
    assert result is not None and result.outcome is SendOutcome.TEMPORARY
    assert result.code is None and "timed out" in result.reply
    assert result.stage is SmtpStage.MAIL


def test_a_relay_that_hangs_up_mid_message_is_temporary_at_data() -> None:
    with silent_relay(hang_up_after_data=True) as port:
        settings = SmtpSettings("127.0.0.1", port, timeout=5)
        with TransportPool(lambda: SmtpTransport(settings), 1, SystemClock()) as pool:
            pool.submit(job(1))
            [outcome] = drain(pool)

    result = outcome.result
    assert result is not None and result.outcome is SendOutcome.TEMPORARY
    assert result.code is None and result.stage is SmtpStage.DATA


class RaisingTransport:
    def send(self, message: bytes, envelope_from: str, recipient: str) -> SendResult:
        raise RuntimeError("transport bug")

    def close(self) -> None:
        pass


def test_a_transport_that_raises_leaves_the_job_in_doubt() -> None:
    with TransportPool(RaisingTransport, 2, SystemClock()) as pool:
        pool.submit(job(1))
        [outcome] = drain(pool)
    assert outcome.result is None and outcome.handed_to_smtp
    assert outcome.error == "RuntimeError: transport bug"
