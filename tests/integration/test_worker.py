"""`sluice worker` as a real process: it starts due mass emails and sends
them to a real SMTP server on its own schedule, records every job run,
beats its heart, and stops cleanly on SIGTERM; `sluice jobs` shows it.

Real time here (the worker is another process on the system clock): the
waits poll for the worker's work with a deadline, they never sleep to let
simulated time pass.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy.orm import Session

from app.cli import build_cli
from app.clock import FixedClock
from app.models import MassEmailStatus
from tests.conftest import TEST_SECRET_KEY
from tests.integration.test_dispatch import World, addresses, make_world
from tests.smtp_server import smtp_server

DEADLINE_SECONDS = 60


@pytest.fixture
def world(app: Flask, session: Session, clock: FixedClock) -> Iterator[World]:
    with smtp_server() as server:
        yield make_world(app, session, clock, server)


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the worker exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"not within {DEADLINE_SECONDS} s: {what}")
        time.sleep(0.2)


def jobs_output(world: World) -> str:
    world.session.commit()
    result = CliRunner().invoke(build_cli(), ["jobs"], obj=ScriptInfo(create_app=lambda: world.app))
    assert result.exit_code == 0, result.output
    return result.output


def start_worker(
    world: World, database_url: str, tmp_path: Path, *, smtp: bool = True
) -> subprocess.Popen[bytes]:
    """``sluice worker`` on the world's database, its output in worker.log."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("SLUICE_")
    } | {
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_INSTANCE_PATH": str(tmp_path / "instance"),
        "SLUICE_SECRET_KEY": TEST_SECRET_KEY,
        "SLUICE_BOUNCE_ADDRESS": "bounces@bounce.example.com",
    }
    if smtp:
        environment["SLUICE_SMTP_URL"] = f"smtp://{world.server.host}:{world.server.port}?timeout=5"
    world.session.commit()
    with (tmp_path / "worker.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", "from app.cli import main; main()", "worker"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_worker(process: subprocess.Popen[bytes], tmp_path: Path) -> str:
    """SIGTERM, as systemd stops it; returns its output. It must exit 0
    once the runs under way are done."""
    process.send_signal(signal.SIGTERM)
    try:
        returncode = process.wait(timeout=DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        returncode = None
    log = (tmp_path / "worker.log").read_text()
    assert returncode == 0, f"the worker did not stop cleanly ({returncode}):\n{log}"
    return log


@pytest.fixture
def worker_process() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Holds the worker a test starts; kills it if the test did not stop it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_worker_starts_and_sends_due_mass_emails_and_stops_on_sigterm(
    world: World,
    database_url: str,
    tmp_path: Path,
    worker_process: list[subprocess.Popen[bytes]],
) -> None:
    world.set(tick_interval_seconds=5, batch_size=100)
    running = world.start("Running", addresses("ann", 5))
    due = world.start("Due", addresses("bob", 3), build=False)
    assert world.status_of(due) == MassEmailStatus.PENDING
    worker = start_worker(world, database_url, tmp_path)
    worker_process.append(worker)

    wait_for(
        lambda: all(
            world.status_of(mass_email) == MassEmailStatus.COMPLETE for mass_email in (running, due)
        ),
        "both mass emails are complete",
        worker,
    )
    world.assert_never_twice()
    assert len(world.received()) == 8

    shown = jobs_output(world)
    assert "alive" in shown
    for job_id in ("activate-due", "dispatch", "housekeeping"):
        [line] = [line for line in shown.splitlines() if line.strip().startswith(job_id)]
        assert " active " in line and "next run: -" not in line, shown
    assert "ok: started mass email(s)" in shown or "ok: nothing due" in shown
    assert "ok: claimed" in shown

    assert "Sluice worker stopped." in stop_worker(worker, tmp_path)

    shown = jobs_output(world)
    assert "stopped, heartbeat" in shown
    assert " active " not in shown, shown


def test_a_worker_without_a_relay_records_the_error_on_each_dispatch_run(
    world: World,
    database_url: str,
    tmp_path: Path,
    worker_process: list[subprocess.Popen[bytes]],
) -> None:
    world.set(tick_interval_seconds=5)
    process = start_worker(world, database_url, tmp_path, smtp=False)
    worker_process.append(process)
    wait_for(lambda: "SLUICE_SMTP_URL" in jobs_output(world), "the error is recorded", process)
    stop_worker(process, tmp_path)
    shown = jobs_output(world)
    [dispatch_error] = [line for line in shown.splitlines() if "error: SmtpNotConfigured" in line]
    assert "set SLUICE_SMTP_URL" in dispatch_error
