"""Benchmark: one poll of a bounce mailbox holding N returned messages.

    .venv/bin/python bench/bounce_poll.py [--messages 5000] [--batch-size 50]
        [--database URL] [--handler auto|parse-only]

A throw-away Dovecot (Debian ``dovecot-imapd``, as in the tests) on a free
127.0.0.1 port; N RFC 3464 delivery status notifications, each a little
different, are placed in its INBOX by IMAP APPEND (timed apart); then one
``poll_bounces`` reads them all in batches, applies each, commits it with the
checkpoint and moves it to Processed. Only the poll is the figure.

``--handler auto`` applies each message with the bounce service's
``process_message`` when this build has it, else with ``parse-only``:
``bounce.read`` (parse and classify) and the checkpoint's commit, which is
the poller's own cost without the bounce service's writes.

``--database`` as in ``bench_support``: a fresh SQLite file by default, or
a fresh database on the given PostgreSQL server, dropped after.

The last line printed is one JSON object:
``{"messages", "database", "handler", "batch_size", "seconds",
"messages_per_second", "append_seconds", "processed", "unparsed", "failed",
"peak_rss_mb"}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

import bounce
from app import app_settings
from app.clock import SystemClock
from app.services.bounce_poll import MessageHandler, PollOptions, poll_bounces
from app.services.runtime_settings import seed_runtime_settings
from bench_support import bench_database, log, migrated_session, peak_rss_mb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.dovecot import DovecotServer, find_dovecot, start_dovecot

DIAGNOSTICS = (
    ("5.1.1", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox"),
    ("4.2.2", "452 4.2.2 <{rcpt}>: Mailbox full"),
    ("5.7.1", "554 5.7.1 <{rcpt}>: Relay access denied"),
    ("4.4.1", "451 4.4.1 Connection timed out while talking to mx.example.net"),
)


def dsn(number: int) -> bytes:
    """An RFC 3464 report from Postfix, with the returned headers."""
    rcpt = f"person.{number}@example{number % 97}.com"
    status, diagnostic = DIAGNOSTICS[number % len(DIAGNOSTICS)]
    diagnostic = diagnostic.format(rcpt=rcpt)
    boundary = f"B{number:08d}.1700000000/mx.example.net"
    return (
        f"Return-Path: <>\r\n"
        f"Delivered-To: bounces+{number}.abcdefgh@bounce.example.com\r\n"
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: bounces+{number}.abcdefgh@bounce.example.com\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <bounce-{number}@mx.example.net>\r\n"
        f"Date: Mon, 2 Mar 2026 09:00:00 +0000\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"\r\n"
        f"This is the mail system at host mx.example.net.\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not\r\n"
        f"be delivered to one or more recipients.\r\n\r\n"
        f"<{rcpt}>: host mx.example{number % 97}.com said: {diagnostic}\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n"
        f"\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n"
        f"Arrival-Date: Mon, 2 Mar 2026 08:59:58 +0000\r\n"
        f"\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\n"
        f"Original-Recipient: rfc822;{rcpt}\r\n"
        f"Action: {'failed' if status.startswith('5') else 'delayed'}\r\n"
        f"Status: {status}\r\n"
        f"Remote-MTA: dns; mx.example{number % 97}.com\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        f"\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n"
        f"\r\n"
        f"Return-Path: <bounces+{number}.abcdefgh@bounce.example.com>\r\n"
        f"From: News <news@example.org>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: March news\r\n"
        f"Message-ID: <sent-{number}@example.org>\r\n"
        f"X-Sluice-Queue-Item: {number}\r\n"
        f"\r\n"
        f"--{boundary}--\r\n"
    ).encode()


@dataclass(frozen=True)
class Applied:
    keep_for_review: bool


def parse_only(session: Session, raw: bytes) -> Applied:
    """Parse and classify; nothing of the report is written."""
    report = bounce.read(raw)
    return Applied(keep_for_review=not report.is_bounce)


def bounce_service_handler() -> MessageHandler | None:
    """The bounce service's ``process_message`` bound to this app, when
    this build has it."""
    try:
        bounces = importlib.import_module("app.services.bounces")
    except ImportError:
        return None
    process: Callable[..., Applied] | None = getattr(bounces, "process_message", None)
    if process is None:
        return None
    settings = app_settings(current_app)
    secret_key = str(current_app.config["SECRET_KEY"])
    clock = SystemClock()

    def handle(session: Session, raw: bytes) -> Applied:
        return process(session, raw, clock=clock, secret_key=secret_key, settings=settings)

    return handle


def append_all(server: DovecotServer, user: str, count: int) -> float:
    started = time.perf_counter()
    with server.client(user) as client:
        for number in range(1, count + 1):
            client.append("INBOX", dsn(number))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--database", default=None)
    parser.add_argument("--handler", choices=("auto", "parse-only"), default="auto")
    args = parser.parse_args()
    executable = find_dovecot()
    if executable is None:
        raise SystemExit("dovecot is not installed (Debian package dovecot-imapd)")
    server = start_dovecot(executable)
    try:
        with bench_database(args.database) as url, migrated_session(url) as session:
            clock = SystemClock()
            seed_runtime_settings(session, app_settings(current_app), clock)
            session.commit()
            handler = bounce_service_handler() if args.handler == "auto" else None
            handler_name = "process_message" if handler is not None else "parse-only"
            user = server.new_user()
            log(f"appending {args.messages} messages…")
            append_seconds = append_all(server, user, args.messages)
            log(f"appended in {append_seconds:.1f} s; polling with {handler_name}…")
            started = time.perf_counter()
            result = poll_bounces(
                session,
                server.url(user),
                handler or parse_only,
                clock=clock,
                runner="bench",
                options=PollOptions(batch_size=args.batch_size),
            )
            seconds = time.perf_counter() - started
            stats = result.stats
            assert stats is not None and not stats.error, result.describe()
            log(result.describe())
            figures = {
                "messages": args.messages,
                "database": make_url(url).get_backend_name(),
                "handler": handler_name,
                "batch_size": args.batch_size,
                "seconds": round(seconds, 2),
                "messages_per_second": round(args.messages / seconds, 1),
                "append_seconds": round(append_seconds, 2),
                "processed": stats.processed,
                "unparsed": stats.unparsed,
                "failed": stats.failed,
                "peak_rss_mb": peak_rss_mb(),
            }
    finally:
        server.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
