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
signal to the last one's end. Every process reports its peak RSS and CPU
time; smtp-sink's CPU time is read from ``/proc``. CPU milliseconds per
message tell the work apart from the waiting on a busy machine (the load
average is reported too).

The last line printed is one JSON object: ``recipients``, ``database``,
``layout`` (processes, SMTP connections per process and in all, threads),
``batch_size``, ``message_bytes``, ``queue_build_seconds``,
``ceiling_messages_per_second``, ``messages_per_second``,
``ratio_to_ceiling``, ``peak_rss_mb`` (main, every runner, every ceiling
process), ``ceiling`` and ``dispatch`` (seconds, messages/s, what smtp-sink
counted, CPU ms per message of the clients and of smtp-sink; per runner its
ticks, tallies and SQL statements), ``load_average``, ``checks`` and
``ok``; the exit status is non-zero when a check failed.

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
from sqlalchemy import (
    JSON,
    String,
    case,
    cast,
    create_engine,
    event,
    func,
    insert,
    literal,
    select,
    text,
)
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
from bench_support import bench_database, log, migrated_session, number_series
from config import load_settings

SECRET_KEY = "bench-secret-key-not-for-production"
SMTP_SINK = "smtp-sink"
# Prebuilt messages the ceiling cycles through (distinct recipients each time).
CEILING_MESSAGES = 64
# A runner whose claim came back empty while another still sends waits this
# long before it looks again (the bench's loop, not the product's).
IDLE_SECONDS = 0.25
# How often the PostgreSQL backends' CPU time is read during the dispatch.
DATABASE_CPU_EVERY = 0.2


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
    # Once stopped: the last value of its running ``mesg=`` counter, and
    # its CPU time.
    received: int = 0
    cpu_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?timeout=60"


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
            sink.cpu_seconds = process_cpu_seconds(process.pid)
            process.terminate()
            process.wait(timeout=10)
            sink.received = last_counter(counter_file)


def last_counter(counter_file: Path) -> int:
    """The last ``mesg=`` value smtp-sink wrote: read from the file's end
    (it holds a counter line per message)."""
    with counter_file.open("rb") as counter:
        counter.seek(max(0, counter_file.stat().st_size - 4096))
        counts = re.findall(rb"mesg=(\d+)", counter.read())
    return int(counts[-1]) if counts else 0


def current_rss_mb() -> float:
    """This process's resident memory now (Linux ``/proc``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``). Not
    ``bench_support.peak_rss_mb``: ``ru_maxrss`` survives ``execve``, so a
    spawned runner would report the main process's peak at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


# ----------------------------------------------------------------- processes


@dataclass(frozen=True)
class Layout:
    runners: int  # processes
    connections: int  # SMTP connections per process (the ceiling: a thread each)

    @property
    def total(self) -> int:
        return self.runners * self.connections


def run_together(target: Any, arguments: list[tuple[Any, ...]]) -> tuple[float, list[Report]]:
    """One ``target`` process per argument tuple: all start, each says when
    it is ready, all are released together. Returns the seconds from the
    start signal to the last one's end, and what each reported."""
    context = multiprocessing.get_context("spawn")
    ready: Queue[int] = context.Queue()
    results: Queue[Report] = context.Queue()
    go = context.Event()
    processes = [
        context.Process(target=target, args=(ready, go, results, *args)) for args in arguments
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


Report = dict[str, Any]


def ceiling_process(
    ready: Queue[int],
    go: Event,
    results: Queue[Report],
    index: int,
    sink_port: int,
    messages: list[bytes],
    share: int,
    connections: int,
) -> None:
    """``connections`` threads, one smtplib connection each, ``share``
    messages in all, with the dispatcher's MAIL, RCPT, DATA."""

    def send(thread: int, count: int) -> None:
        connection = smtplib.SMTP("127.0.0.1", sink_port, timeout=60)
        connection.ehlo()
        for number in range(count):
            connection.mail("bounces@bounce.example.com")
            connection.rcpt(f"ceiling.{index}.{thread}.{number}@example.com")
            code, _ = connection.data(messages[number % len(messages)])
            if code != 250:
                raise SystemExit(f"smtp-sink answered {code}")
        connection.quit()

    counts = [share // connections + (t < share % connections) for t in range(connections)]
    threads = [threading.Thread(target=send, args=(t, counts[t])) for t in range(connections)]
    ready.put(index)
    go.wait()
    cpu_started = time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(
        {
            "finished": time.perf_counter(),
            "cpu_seconds": time.process_time() - cpu_started,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def runner_process(
    ready: Queue[int],
    go: Event,
    results: Queue[Report],
    index: int,
    database_url: str,
    smtp_url: str,
    mass_email_id: int,
) -> None:
    """A Sluice runner: a Sluice app on the database, looping
    ``activate_due`` + ``dispatch_tick`` until the mass email is complete
    (what a long-running worker does; ``sluice dispatch --once`` is one
    round of it)."""
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
            report = run_runner(ready, go, index, app_settings(app), mass_email_id, smtp_url)
            db.session.remove()
            db.engine.dispose()
    results.put(report)


def run_runner(
    ready: Queue[int], go: Event, index: int, settings: Any, mass_email_id: int, smtp_url: str
) -> Report:
    session = db.session()
    clock = SystemClock()
    runtime = get_runtime_settings(session)
    smtp = parse_smtp_url(smtp_url)
    config = MessageConfig(settings, SECRET_KEY, None)
    runner_id = f"bench-runner-{index}"
    session.commit()

    def transport_factory() -> Transport:
        return SmtpTransport(smtp)

    statements = count_statements()
    totals = TickResult()
    ticks = 0
    rss_by_tick: list[tuple[float, float]] = []
    ready.put(index)
    go.wait()
    cpu_started = time.process_time()
    while True:
        activate_due(session, clock)
        result = dispatch_tick(session, transport_factory, clock, runtime, runner_id, config=config)
        ticks += 1
        rss_by_tick.append((current_rss_mb(), peak_rss_mb()))
        add_up(totals, result)
        if result.claimed == 0:
            if not in_progress(session, mass_email_id):
                break
            time.sleep(IDLE_SECONDS)  # another runner sends the last portion
    return {
        "runner": runner_id,
        "finished": time.perf_counter(),
        "cpu_seconds": round(time.process_time() - cpu_started, 2),
        "peak_rss_mb": peak_rss_mb(),
        "ticks": ticks,
        # Resident memory (now, peak so far) after the first tick, half-way
        # and at the end.
        "rss_mb_after_ticks": [rss_by_tick[0], rss_by_tick[len(rss_by_tick) // 2], rss_by_tick[-1]],
        **{name: getattr(totals, name) for name in TALLIES},
        "stopped": totals.stopped,
        "statements": dict(statements.most_common(8)),
    }


TALLIES = ("claimed", "sent", "retried", "failed", "bounced", "skipped", "released", "in_doubt")


def count_statements() -> Counter[str]:
    """The runner's SQL statements by their first words, and commits."""
    statements: Counter[str] = Counter()

    @event.listens_for(db.engine, "before_cursor_execute")
    def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        statements[" ".join(text.split()[:3])] += 1

    @event.listens_for(db.engine, "commit")
    def commit(conn: Any) -> None:
        statements["COMMIT"] += 1

    return statements


def add_up(totals: TickResult, result: TickResult) -> None:
    for name in TALLIES:
        setattr(totals, name, getattr(totals, name) + getattr(result, name))
    if result.stopped:
        totals.stopped = result.stopped


def in_progress(session: Session, mass_email_id: int) -> bool:
    status = session.scalar(select(MassEmail.status).where(MassEmail.id == mass_email_id))
    session.commit()
    return status == MassEmailStatus.IN_PROGRESS


# ----------------------------------------------------------------- the phases


def shares(count: int, parts: int) -> list[int]:
    return [count // parts + (part < count % parts) for part in range(parts)]


def measure_ceiling(layout: Layout, count: int, messages: list[bytes]) -> Report:
    with smtp_sink() as sink:
        seconds, reports = run_together(
            ceiling_process,
            [
                (index, sink.port, messages, share, layout.connections)
                for index, share in enumerate(shares(count, layout.runners))
            ],
        )
    return phase_report(count, seconds, reports, sink)


def measure_dispatch(layout: Layout, count: int, database_url: str, mass_email_id: int) -> Report:
    with smtp_sink() as sink, DatabaseCpu(database_url) as database_cpu:
        seconds, reports = run_together(
            runner_process,
            [(index, database_url, sink.url, mass_email_id) for index in range(layout.runners)],
        )
    report = phase_report(count, seconds, reports, sink)
    if database_cpu.seconds is not None:
        report["database_cpu_ms_per_message"] = round(database_cpu.seconds * 1000 / count, 3)
    report["runners"] = [
        {key: value for key, value in runner.items() if key != "finished"} for runner in reports
    ]
    return report


class DatabaseCpu:
    """The CPU time of the PostgreSQL backends serving the bench database
    while the runners send: sampled from ``/proc`` every
    ``DATABASE_CPU_EVERY`` seconds (the server runs on this machine), the
    last value of each backend kept. None on SQLite, whose work is in the
    runners' own CPU time."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_engine(database_url)
        self._stop = threading.Event()
        self._latest: dict[int, float] = {}
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.seconds: float | None = None

    def __enter__(self) -> DatabaseCpu:
        if self._engine.dialect.name == "postgresql":
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
            self.seconds = sum(self._latest.values())
        self._engine.dispose()

    def _sample(self) -> None:
        with self._engine.connect() as connection:
            query = text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            while not self._stop.wait(DATABASE_CPU_EVERY):
                for pid in connection.execute(query).scalars():
                    self._latest[pid] = process_cpu_seconds(pid) or self._latest.get(pid, 0.0)
                connection.rollback()


def phase_report(count: int, seconds: float, reports: list[Report], sink: Sink) -> Report:
    cpu = sum(report["cpu_seconds"] for report in reports)
    return {
        "seconds": round(seconds, 2),
        "messages_per_second": round(count / seconds),
        "sink_received": sink.received,
        "client_cpu_ms_per_message": round(cpu * 1000 / count, 3),
        "sink_cpu_ms_per_message": round(sink.cpu_seconds * 1000 / count, 3),
        "peak_rss_mb": [report["peak_rss_mb"] for report in reports],
    }


def item_counts(session: Session, mass_email_id: int) -> dict[str, int]:
    rows = session.execute(
        select(QueueItem.status, func.count())
        .where(QueueItem.mass_email_id == mass_email_id)
        .group_by(QueueItem.status)
    )
    return {str(QueueItemStatus(status)): count for status, count in rows}


def checks(
    session: Session, mass_email_id: int, count: int, ceiling: Report, dispatch: Report
) -> Report:
    """Every item sent exactly once, as far as the database and smtp-sink tell."""
    session.expire_all()
    counts = item_counts(session, mass_email_id)
    attempts = session.scalar(
        select(func.count())
        .select_from(SendAttempt)
        .where(SendAttempt.mass_email_id == mass_email_id)
    )
    status = session.scalar(select(MassEmail.status).where(MassEmail.id == mass_email_id))
    session.commit()
    log(f"queue items per status: {counts}")
    return {
        "all_items_sent": counts == {"sent": count},
        "one_send_attempt_each": attempts == count,
        "mass_email_complete": status == MassEmailStatus.COMPLETE,
        "sink_received_exactly_n": dispatch["sink_received"] == count,
        "ceiling_sink_received_exactly_n": ceiling["sink_received"] == count,
    }


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
    load_before = os.getloadavg()

    with (
        bench_database(None if args.database == "sqlite" else args.database) as database_url,
        migrated_session(database_url) as session,
    ):
        dialect = session.get_bind().dialect.name
        started = time.perf_counter()
        mass_email_id = scheduled_mass_email(session, count, args, clock)
        log(f"{count:,} contacts and the mass email in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        activate_due(session, clock)
        build_seconds = time.perf_counter() - started
        log(f"queue built in {build_seconds:.2f} s: {item_counts(session, mass_email_id)}")
        messages = prebuilt_messages(session, mass_email_id)
        session.commit()
        size = sum(map(len, messages)) // len(messages)
        log(f"{layout.runners} process(es) x {layout.connections} connection(s); ~{size:,} bytes")

        ceiling = measure_ceiling(layout, count, messages)
        log(f"ceiling: {ceiling['messages_per_second']:,} msgs/s in {ceiling['seconds']} s")
        log(f"main process: peak RSS {peak_rss_mb()} MB, now {current_rss_mb()} MB")
        dispatch = measure_dispatch(layout, count, database_url, mass_email_id)
        log(f"end to end: {dispatch['messages_per_second']:,} msgs/s in {dispatch['seconds']} s")
        log(f"main process: peak RSS {peak_rss_mb()} MB, now {current_rss_mb()} MB")
        verified = checks(session, mass_email_id, count, ceiling, dispatch)

    rate, ceiling_rate = count / dispatch["seconds"], count / ceiling["seconds"]
    result = {
        "recipients": count,
        "database": dialect,
        "layout": {
            "processes": layout.runners,
            "smtp_connections_per_process": layout.connections,
            "smtp_connections": layout.total,
            "threads": "ceiling: one thread per SMTP connection; runners: one event loop for all",
        },
        "batch_size": args.batch_size,
        "message_bytes": size,
        "queue_build_seconds": round(build_seconds, 2),
        "ceiling_messages_per_second": round(ceiling_rate),
        "messages_per_second": round(rate),
        "ratio_to_ceiling": round(rate / ceiling_rate, 3),
        "peak_rss_mb": {
            "main": peak_rss_mb(),
            "runners": dispatch["peak_rss_mb"],
            "ceiling_processes": ceiling["peak_rss_mb"],
        },
        "ceiling": ceiling,
        "dispatch": dispatch,
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
        "checks": verified,
        "ok": all(verified.values()),
    }
    print(json.dumps(result))
    if not result["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
