"""Benchmark: one poll of a bounce mailbox holding N returned messages.

    .venv/bin/python bench/bounce_poll.py [--messages 5000] [--batch-size 50]
        [--database URL]

(also ``bench/bounces.py --part poll``). A mass email is sent, on paper, to
N contacts (its queue built by ``activate_due``, every item then marked
sent: set-up, not timed). A throw-away Dovecot (Debian ``dovecot-imapd``,
as in the tests) on a free 127.0.0.1 port gets one RFC 3464 delivery status
notification per item in its INBOX by IMAP APPEND (timed apart), each to
the item's VERP return path, as a remote Postfix writes them: hard (5.1.1),
soft (4.2.2), a policy refusal (5.7.1) and a delay (4.4.1), in turn. Then one
``poll_bounces`` with the bounce service (``process_message``, as the
worker runs it) reads them all in batches: it records each message, reads
it, verifies its VERP address, applies it (bounced item, invalid contact,
suppression, campaign log), commits it with the checkpoint and moves it to
Processed. Only the poll is the figure.

``--database`` as in ``bench_support``: a fresh SQLite file by default, or
a fresh database on the given PostgreSQL server, dropped after.

The last line printed is one JSON object:
``{"messages", "database", "batch_size", "seconds", "messages_per_second",
"append_seconds", "processed", "unparsed", "failed", "hard_bounced",
"peak_rss_mb"}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from dispatch import scheduled_mass_email
from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app import app_settings
from app.clock import FixedClock
from app.context import CLOCK_CONFIG_KEY, app_bounce_handler
from app.models import BounceKind, QueueItem, QueueItemStatus
from app.services.bounce_poll import PollOptions, poll_bounces
from app.services.queue_build import activate_due
from app.services.return_path import verp_codec
from app.services.runtime_settings import get_runtime_settings
from bench_support import NOW, bench_database, log, migrated_session, peak_rss_mb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.dovecot import DovecotServer, find_dovecot, start_dovecot

DIAGNOSTICS = (
    ("5.1.1", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox"),
    ("4.2.2", "452 4.2.2 <{rcpt}>: Mailbox full"),
    ("5.7.1", "554 5.7.1 <{rcpt}>: Relay access denied"),
    ("4.4.1", "451 4.4.1 Connection timed out while talking to mx.example.net"),
)


def dsn(number: int, return_path: str, rcpt: str) -> bytes:
    """An RFC 3464 report from Postfix about ``rcpt``, to ``return_path``,
    with the returned headers."""
    status, diagnostic = DIAGNOSTICS[number % len(DIAGNOSTICS)]
    diagnostic = diagnostic.format(rcpt=rcpt)
    boundary = f"B{number:08d}.1700000000/mx.example.net"
    return (
        f"Return-Path: <>\r\n"
        f"Delivered-To: {return_path}\r\n"
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {return_path}\r\n"
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
        f"Return-Path: <{return_path}>\r\n"
        f"From: News <news@example.org>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: March news\r\n"
        f"Message-ID: <sent-{number}@example.org>\r\n"
        f"X-Sluice-Queue-Item: {number}\r\n"
        f"\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def sent_items(session: Session, count: int, clock: FixedClock) -> list[tuple[int, str]]:
    """A mass email to ``count`` contacts whose items are all sent: (item
    id, address) of each."""
    options = argparse.Namespace(batch_size=1000, connections=4, lease_seconds=300)
    mass_email_id = scheduled_mass_email(session, count, options, clock)
    activate_due(session, clock)
    session.execute(
        update(QueueItem)
        .where(QueueItem.mass_email_id == mass_email_id)
        .values(status=QueueItemStatus.SENT, sent_at=clock.now(), attempts=1)
    )
    session.commit()
    return list(
        session.execute(
            select(QueueItem.id, QueueItem.email)
            .where(QueueItem.mass_email_id == mass_email_id)
            .order_by(QueueItem.id)
        )
    )


def bounces_of(session: Session, items: list[tuple[int, str]]) -> list[bytes]:
    """One DSN per item, to its VERP return path."""
    settings = app_settings(current_app)
    codec = verp_codec(
        settings.bounce_address,
        get_runtime_settings(session).bounce_domain,
        str(current_app.config["SECRET_KEY"]),
        enabled=True,
    )
    assert codec is not None
    return [
        dsn(number, codec.encode(item_id), email)
        for number, (item_id, email) in enumerate(items, 1)
    ]


def append_all(server: DovecotServer, user: str, messages: list[bytes]) -> float:
    started = time.perf_counter()
    with server.client(user) as client:
        for raw in messages:
            client.append("INBOX", raw)
    return time.perf_counter() - started


def poll_part(messages: int, batch_size: int, database: str | None) -> dict[str, object]:
    """Set up, append, poll once; the figures."""
    executable = find_dovecot()
    if executable is None:
        raise SystemExit("dovecot is not installed (Debian package dovecot-imapd)")
    server = start_dovecot(executable)
    try:
        with bench_database(database) as url, migrated_session(url) as session:
            clock = FixedClock(NOW)
            current_app.config[CLOCK_CONFIG_KEY] = clock
            current_app.config["SLUICE_SETTINGS"] = dataclasses.replace(
                app_settings(current_app), bounce_address="bounces@bounce.example.com"
            )
            log(f"sending a mass email to {messages:,} contacts (on paper)…")
            returned = bounces_of(session, sent_items(session, messages, clock))
            user = server.new_user()
            append_seconds = append_all(server, user, returned)
            log(f"appended {messages:,} bounces in {append_seconds:.1f} s; polling…")
            started = time.perf_counter()
            result = poll_bounces(
                session,
                server.url(user),
                app_bounce_handler(current_app, clock),
                clock=clock,
                runner="bench",
                options=PollOptions(batch_size=batch_size),
            )
            seconds = time.perf_counter() - started
            stats = result.stats
            assert stats is not None and not stats.error, result.describe()
            log(result.describe())
            hard_bounced = session.scalar(
                select(func.count()).where(QueueItem.bounce_kind == BounceKind.HARD)
            )
            return {
                "part": "poll",
                "messages": messages,
                "database": make_url(url).get_backend_name(),
                "batch_size": batch_size,
                "seconds": round(seconds, 2),
                "messages_per_second": round(messages / seconds, 1),
                "append_seconds": round(append_seconds, 2),
                "processed": stats.processed,
                "unparsed": stats.unparsed,
                "failed": stats.failed,
                "hard_bounced": hard_bounced,
                "peak_rss_mb": peak_rss_mb(),
            }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    print(json.dumps(poll_part(args.messages, args.batch_size, args.database)))


if __name__ == "__main__":
    main()
