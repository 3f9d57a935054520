"""Benchmark: dispatch a mass email of N recipients to Postfix's smtp-sink,
against the raw ceiling of plain smtplib over the same connections.

    .venv/bin/python bench/dispatch.py [--recipients 100000] [--database postgresql|sqlite|URL]
                                       [--runners 2] [--connections 4] [--batch-size 2000]

Set-up (not timed): a fresh database (``bench_support``: a throw-away
PostgreSQL database by default, ``--database sqlite`` a temporary file), N
contacts written by the database itself, a target list of all of them, the
render benchmark's newsletter (~8 KB HTML, 10 links, 5 placeholders) as a
newsletter campaign's mass email, scheduled through the services
(pre-flight, snapshot), its queue built by ``activate_due`` (timed and
reported apart). Runtime settings: ``max_per_hour`` at its maximum and
``batch_size`` per ``--batch-size``, so the quota never holds a claim back.

Phase 1, the ceiling: ``--runners`` processes with ``--connections``
threads each, each thread one smtplib connection to a fresh smtp-sink,
send N messages built beforehand by the mass email's ``MessageFactory``
(so of the same size), with the dispatcher's MAIL/RCPT/DATA calls.

Phase 2, end to end: ``--runners`` processes, each a Sluice app on the same
database looping ``activate_due`` + ``dispatch_tick`` (``smtp_connections``
= ``--connections``) until the mass email is complete, against another
fresh smtp-sink. Checked afterwards: every queue item ``sent``, one ledger
row each, and smtp-sink counted exactly N messages.

Both phases start their processes first and time from a common start
signal to the last one's end. Every process reports its peak RSS.

The last line printed is one JSON object: recipients, database, layout
(runners, connections per runner, total connections, processes vs threads),
ceiling and end-to-end messages/s, their ratio, the peak RSS of every
process, the queue build time, and the checks.

smtp-sink (Debian package ``postfix``, binary only; ``make system-packages``)
runs as ``smtp-sink -u nobody -a -c 127.0.0.1:PORT 1000`` on a free port: ``-a``
stops it advertising AUTH, ``-c`` prints its running message counter.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from flask import current_app
from render import CITIES, template_html
from sqlalchemy import JSON, String, case, cast, event, func, insert, literal, select
from sqlalchemy.orm import Session

from app import app_settings, create_app
from app.clock import Clock, SystemClock
from app.extensions import db
from app.models import Contact, MassEmail, MassEmailStatus, QueueItem, QueueItemStatus, SendAttempt
from app.models.base import UTCDateTime
from app.services.campaigns import (
    TemplateInput,
    add_mass_email,
    create_campaign,
    create_sender_profile,
    save_template,
    schedule_mass_email,
)
from app.services.dispatch_send import MessageConfig, TickResult, dispatch_tick
from app.services.messages import MessageFactory
from app.services.queue_build import activate_due
from app.services.runtime_settings import (
    get_runtime_settings,
    seed_runtime_settings,
    update_runtime_settings,
)
from app.services.target_lists import add_members, create_target_list
from app.services.transport import SmtpTransport, Transport, parse_smtp_url
from bench_support import bench_database, log, migrated_session, number_series, peak_rss_mb
from config import load_settings

SECRET_KEY = "bench-secret-key-not-for-production"
SMTP_SINK = "smtp-sink"
# Prebuilt messages the ceiling cycles through (distinct recipients each time).
CEILING_MESSAGES = 64
# A runner whose claim came back empty while another still sends waits this
# long before it looks again (the bench's loop, not the product's).
IDLE_SECONDS = 0.05


# ----------------------------------------------------------------- smtp-sink


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Sink:
    """A running smtp-sink and the file its counter goes to."""

    port: int
    process: subprocess.Popen[bytes]
    counter_file: Path

    received: int = 0

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=60"

    def messages(self) -> int:
        """How many messages smtp-sink took: the last value of its running
        ``mesg=`` counter, which it writes out when it stops."""
        return self.received


@contextmanager
def smtp_sink() -> Iterator[Sink]:
    """smtp-sink on a free port, stopped (by its PID) afterwards."""
    if shutil.which(SMTP_SINK) is None and not Path("/usr/sbin/smtp-sink").exists():
        raise SystemExit("smtp-sink not found: install the Debian package postfix")
    binary = shutil.which(SMTP_SINK) or "/usr/sbin/smtp-sink"
    with tempfile.TemporaryDirectory(prefix="sluice-bench-sink-") as folder:
        counter_file = Path(folder) / "counter"
        port = free_port()
        command = [binary, "-a", "-c", f"127.0.0.1:{port}", "1000"]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "nobody"]  # smtp-sink refuses to run as root
        with counter_file.open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        sink = Sink(port, process, counter_file)
        try:
            wait_for_port(port, process)
            yield sink
        finally:
            process.terminate()
            process.wait(timeout=10)
            counts = re.findall(rb"mesg=(\d+)", counter_file.read_bytes())
            sink.received = int(counts[-1]) if counts else 0


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"smtp-sink exited with status {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise SystemExit(f"smtp-sink did not open port {port}")


# ----------------------------------------------------------------- set-up


def insert_contacts(session: Session, count: int, now: Any) -> None:
    """N distinct recipients, written by one ``INSERT … SELECT``."""
    series = number_series(session, count)
    n = series.c.value
    email = literal("person.") + cast(n, String) + "@example" + cast(n % 50, String) + ".com"
    city = case(
        *(
            (n % len(CITIES) == index, literal({"City": name, "plan": "pro"}, JSON))
            for index, name in enumerate(CITIES)
        )
    )
    columns = {
        "email": email,
        "email_lower": email,
        "first_name": literal("First") + cast(n, String),
        "last_name": literal("Last") + cast(n, String),
        "company": literal("Company ") + cast(n % 997, String),
        "audience_type": literal("contact"),
        "custom_fields": city,
        "created_at": literal(now, UTCDateTime()),
        "updated_at": literal(now, UTCDateTime()),
        "email_status": literal("valid"),
        "email_status_reason": literal(""),
        "opted_out": literal(False),
        "opt_out_source": literal(""),
    }
    session.execute(insert(Contact).from_select(list(columns), select(*columns.values())))


def scheduled_mass_email(
    session: Session, count: int, args: argparse.Namespace, clock: Clock
) -> int:
    """The newsletter to N contacts, scheduled to start now; its id."""
    settings = dataclasses.replace(
        app_settings(current_app), bounce_address="bounces@bounce.example.com"
    )
    seed_runtime_settings(session, settings, clock)
    update_runtime_settings(
        session,
        {
            "site_url": "https://sluice.example.com",
            "company_name": "Example Corp",
            "postal_address": "100 Example Plaza, Denver, CO 80202, USA",
            "max_per_hour": 10_000_000,  # the setting's maximum: no effective cap
            "batch_size": args.batch_size,
            "smtp_connections": args.connections,
            "lease_seconds": args.lease_seconds,
        },
        clock,
    )
    insert_contacts(session, count, clock.now())
    target_list = create_target_list(session, "Everyone", "", clock)
    add_members(session, target_list, select(Contact.id), clock)
    profile = create_sender_profile(
        session, "Bench", "Example Corp", "news@example.com", "maria.alvarez@example.com"
    )
    template = save_template(
        session,
        TemplateInput(
            name="Bench newsletter",
            subject="{{ FIRST_NAME }}, here is what's new at Example Corp",
            body_html=template_html(),
        ),
        clock,
    )
    campaign = create_campaign(
        session,
        name="Bench newsletter",
        type="newsletter",
        target_list_ids=[target_list.id],
        excluding_list_ids=[],
        sender_profile_id=profile.id,
        clock=clock,
    )
    mass_email = add_mass_email(
        session, campaign, template_id=template.id, name="March", clock=clock
    )
    schedule_mass_email(
        session,
        mass_email,
        start_at=None,
        can_spam_confirmed=True,
        runtime=get_runtime_settings(session),
        settings=settings,
        secret_key=SECRET_KEY,
        clock=clock,
    )
    session.commit()
    return mass_email.id


def prebuilt_messages(session: Session, mass_email_id: int) -> list[bytes]:
    """Messages of the mass email for its first contacts, as the ceiling's
    payload: the same size as what the dispatcher sends."""
    mass_email = session.get(MassEmail, mass_email_id)
    assert mass_email is not None
    factory = MessageFactory.for_mass_email(
        session,
        mass_email,
        runtime=get_runtime_settings(session),
        settings=app_settings(current_app),
        secret_key=SECRET_KEY,
        dkim_key=None,
    )
    contacts = session.scalars(select(Contact).order_by(Contact.id).limit(CEILING_MESSAGES))
    now = SystemClock().now()
    return [
        factory.build(
            queue_item_id=index, contact=contact, to_address=contact.email or "", now=now
        ).data
        for index, contact in enumerate(contacts, start=1)
    ]


# ----------------------------------------------------------------- process plumbing


@dataclass(frozen=True)
class Layout:
    runners: int  # processes
    connections: int  # threads (one SMTP connection each) per process

    @property
    def total(self) -> int:
        return self.runners * self.connections


def run_processes(
    target: Any, layout: Layout, arguments: tuple[Any, ...]
) -> tuple[float, list[dict[str, Any]]]:
    """Start one ``target`` process per runner, wait until all are ready,
    release them together, and return the seconds from the start signal to
    the last one's end and what each reported."""
    context = multiprocessing.get_context("spawn")
    ready: Queue[int] = context.Queue()
    results: Queue[dict[str, Any]] = context.Queue()
    go = context.Event()
    processes = [
        context.Process(target=target, args=(index, ready, go, results, *arguments))
        for index in range(layout.runners)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=300)
    started = time.perf_counter()
    go.set()
    reports = [results.get(timeout=3600) for _ in processes]
    for process in processes:
        process.join()
    ended = max(report["finished"] for report in reports)
    return ended - started, reports


def ceiling_process(
    index: int,
    ready: Queue[int],
    go: Event,
    results: Queue[dict[str, Any]],
    sink_port: int,
    messages: list[bytes],
    share: int,
    connections: int,
) -> None:
    """``connections`` threads, one smtplib connection each, ``share``
    messages in all; the dispatcher's MAIL, RCPT, DATA."""

    def send(thread: int, count: int) -> None:
        connection = smtplib.SMTP("127.0.0.1", sink_port, timeout=60)
        connection.ehlo()
        for number in range(count):
            connection.mail("bounces@bounce.example.com")
            connection.rcpt(f"ceiling.{index}.{thread}.{number}@example.com")
            code, _ = connection.data(messages[number % len(messages)])
            assert code == 250, code
        connection.quit()

    counts = [
        share // connections + (thread < share % connections) for thread in range(connections)
    ]
    threads = [threading.Thread(target=send, args=(t, counts[t])) for t in range(connections)]
    ready.put(index)
    go.wait()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put({"finished": time.perf_counter(), "peak_rss_mb": peak_rss_mb()})


def runner_process(
    index: int,
    ready: Queue[int],
    go: Event,
    results: Queue[dict[str, Any]],
    database_url: str,
    smtp_url: str,
    mass_email_id: int,
) -> None:
    """A Sluice runner: ``activate_due`` + ``dispatch_tick`` until the mass
    email is complete (the loop a long-running worker would run)."""
    with tempfile.TemporaryDirectory(prefix="sluice-bench-runner-") as instance:
        settings = load_settings(
            environ={},
            database_url=database_url,
            instance_path=instance,
            secret_key=SECRET_KEY,
            smtp_url=smtp_url,
            bounce_address="bounces@bounce.example.com",
        )
        app = create_app(settings)
        with app.app_context():
            report = run_runner(index, ready, go, app_settings(app), mass_email_id, smtp_url)
            db.session.remove()
            db.engine.dispose()
    results.put(report)


def run_runner(
    index: int, ready: Queue[int], go: Event, settings: Any, mass_email_id: int, smtp_url: str
) -> dict[str, Any]:
    session = db.session()
    if os.environ.get("BENCH_SWITCH"):
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH"]))
    clock = SystemClock()
    runtime = get_runtime_settings(session)
    smtp = parse_smtp_url(smtp_url)
    config = MessageConfig(settings, SECRET_KEY, None)
    runner_id = f"bench-runner-{index}"
    session.commit()

    def transport_factory() -> Transport:
        return SmtpTransport(smtp)

    totals = TickResult()
    ticks = 0
    statements: Counter[str] = Counter()

    @event.listens_for(db.engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements[" ".join(statement.split()[:3])] += 1

    @event.listens_for(db.engine, "commit")
    def count_commit(conn: Any) -> None:
        statements["COMMIT"] += 1

    ready.put(index)
    go.wait()
    cpu_started = time.process_time()
    while True:
        activate_due(session, clock)
        result = dispatch_tick(session, transport_factory, clock, runtime, runner_id, config=config)
        ticks += 1
        add_up(totals, result)
        if result.claimed == 0:
            if not unfinished(session, mass_email_id):
                break
            time.sleep(IDLE_SECONDS)
    finished = time.perf_counter()
    report = {
        "runner": runner_id,
        "finished": finished,
        "ticks": ticks,
        "cpu_seconds": round(time.process_time() - cpu_started, 2),
        "peak_rss_mb": peak_rss_mb(),
        **{
            name: getattr(totals, name)
            for name in ("claimed", "sent", "retried", "failed", "released", "in_doubt", "late")
        },
        "stopped": totals.stopped,
        "statements": dict(statements.most_common(12)),
    }
    return report


def add_up(totals: TickResult, result: TickResult) -> None:
    for name in (
        "claimed",
        "sent",
        "retried",
        "failed",
        "released",
        "in_doubt",
        "late",
        "bounced",
        "skipped",
    ):
        setattr(totals, name, getattr(totals, name) + getattr(result, name))
    if result.stopped:
        totals.stopped = result.stopped


def unfinished(session: Session, mass_email_id: int) -> bool:
    """Whether the mass email still has items to send or in flight."""
    status = session.scalar(select(MassEmail.status).where(MassEmail.id == mass_email_id))
    session.commit()
    return status == MassEmailStatus.IN_PROGRESS


# ----------------------------------------------------------------- the run


def item_counts(session: Session, mass_email_id: int) -> dict[str, int]:
    rows = session.execute(
        select(QueueItem.status, func.count())
        .where(QueueItem.mass_email_id == mass_email_id)
        .group_by(QueueItem.status)
    )
    return {str(QueueItemStatus(status)): count for status, count in rows}


def measure_ceiling(layout: Layout, count: int, messages: list[bytes]) -> dict[str, Any]:
    with smtp_sink() as sink:
        shares = [
            count // layout.runners + (r < count % layout.runners) for r in range(layout.runners)
        ]
        # Every process gets its own share through its arguments.
        seconds, reports = run_ceiling(layout, sink.port, messages, shares)
    received = sink.messages()
    return {
        "seconds": round(seconds, 2),
        "messages_per_second": round(count / seconds),
        "received": received,
        "peak_rss_mb": [report["peak_rss_mb"] for report in reports],
    }


def run_ceiling(
    layout: Layout, port: int, messages: list[bytes], shares: list[int]
) -> tuple[float, list[dict[str, Any]]]:
    context = multiprocessing.get_context("spawn")
    ready: Queue[int] = context.Queue()
    results: Queue[dict[str, Any]] = context.Queue()
    go = context.Event()
    processes = [
        context.Process(
            target=ceiling_process,
            args=(index, ready, go, results, port, messages, shares[index], layout.connections),
        )
        for index in range(layout.runners)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=300)
    started = time.perf_counter()
    go.set()
    reports = [results.get(timeout=3600) for _ in processes]
    for process in processes:
        process.join()
    return max(report["finished"] for report in reports) - started, reports


def measure_dispatch(
    layout: Layout, database_url: str, mass_email_id: int
) -> tuple[dict[str, Any], int]:
    with smtp_sink() as sink:
        seconds, reports = run_processes(
            runner_process, layout, (database_url, sink.url, mass_email_id)
        )
    received = sink.messages()
    return {
        "seconds": round(seconds, 2),
        "runners": reports,
        "peak_rss_mb": [report["peak_rss_mb"] for report in reports],
    }, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--database", default="postgresql", help="postgresql, sqlite or a URL")
    parser.add_argument("--runners", type=int, default=2, help="runner processes")
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections per runner")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--lease-seconds", type=int, default=300)
    args = parser.parse_args()
    layout = Layout(args.runners, args.connections)
    count = args.recipients
    clock = SystemClock()

    with (
        bench_database(None if args.database == "sqlite" else args.database) as database_url,
        migrated_session(database_url) as session,
    ):
        dialect = session.get_bind().dialect.name
        started = time.perf_counter()
        mass_email_id = scheduled_mass_email(session, count, args, clock)
        log(
            f"set up {count:,} contacts and the mass email in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        activate_due(session, clock)
        build_seconds = time.perf_counter() - started
        log(f"queue built in {build_seconds:.2f} s: {item_counts(session, mass_email_id)}")
        messages = prebuilt_messages(session, mass_email_id)
        session.commit()
        average = sum(map(len, messages)) // len(messages)
        log(
            f"ceiling: {layout.runners} process(es) x {layout.connections} connection(s), "
            f"messages of ~{average:,} bytes"
        )

        ceiling = measure_ceiling(layout, count, messages)
        log(f"ceiling: {ceiling['messages_per_second']:,} msgs/s ({ceiling['seconds']} s)")

        dispatch, received = measure_dispatch(layout, database_url, mass_email_id)
        rate = count / dispatch["seconds"]
        log(f"end to end: {rate:,.0f} msgs/s ({dispatch['seconds']} s)")
        session.expire_all()
        counts = item_counts(session, mass_email_id)
        attempts = session.scalar(
            select(func.count())
            .select_from(SendAttempt)
            .where(SendAttempt.mass_email_id == mass_email_id)
        )
        status = session.scalar(select(MassEmail.status).where(MassEmail.id == mass_email_id))
        session.commit()

    checks = {
        "all_sent": counts == {"sent": count},
        "sink_received": received,
        "sink_received_exactly_n": received == count,
        "ceiling_sink_received_exactly_n": ceiling["received"] == count,
        "send_attempts": attempts,
        "mass_email_status": str(status),
    }
    log(f"checks: {checks}; statuses {counts}")
    result = {
        "recipients": count,
        "database": dialect,
        "layout": {
            "processes": layout.runners,
            "connections_per_process": layout.connections,
            "total_connections": layout.total,
            "threads": "one thread per SMTP connection in each process, ceiling and dispatcher",
        },
        "batch_size": args.batch_size,
        "message_bytes": average,
        "queue_build_seconds": round(build_seconds, 2),
        "ceiling_messages_per_second": ceiling["messages_per_second"],
        "ceiling_seconds": ceiling["seconds"],
        "messages_per_second": round(rate),
        "seconds": dispatch["seconds"],
        "ratio_to_ceiling": round(rate / ceiling["messages_per_second"], 3),
        "peak_rss_mb": {
            "main": peak_rss_mb(),
            "runners": dispatch["peak_rss_mb"],
            "ceiling_processes": ceiling["peak_rss_mb"],
        },
        "runners": [
            {key: value for key, value in report.items() if key != "finished"}
            for report in dispatch["runners"]
        ],
        "checks": checks,
        "ok": all(value for key, value in checks.items() if isinstance(value, bool)),
    }
    print(json.dumps(result))
    if not result["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
