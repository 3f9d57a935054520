"""Dispatcher runners in processes of their own, for the multi-process and
crash tests (started through ``tests.process_harness``).

``python -m tests.runner_process DATABASE_URL SMTP_URL CLOCK_FILE FOLDER``
runs one runner: it builds the real app (``create_app``) on the database,
takes its time from the shared ``FileClock`` (injected the way ``sluice
dispatch`` takes a test's clock, through ``app.config[CLOCK_CONFIG_KEY]``)
and loops what ``sluice dispatch --once`` does, under one runner id for its
whole life: ``activate_due`` then ``dispatch_tick`` over ``SmtpTransport``.
No dispatcher rule is repeated here. It writes ``FOLDER/ready`` before its
first tick and leaves after the tick during which ``FOLDER/stop`` appeared
(or its parent process went away).
A tick that claimed nothing is followed by a short real pause, so idle
runners do not hammer the database while the test moves the clock.

``python -m tests.runner_process --fork-server`` imports all that once and
then forks one runner per line on its standard input (a JSON list of the
four arguments), answering with the child's process id. The crash tests
restart a runner dozens of times: a fork costs milliseconds, a fresh
interpreter importing the app a second or more of a shared CPU. Each child
is a process of its own (its own database connections, opened after the
fork), killed with a real SIGKILL. Its output goes to ``FOLDER/runner.log``;
on leaving it writes its exit status to ``FOLDER/exit`` (a killed one
writes nothing).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import NoReturn

from flask import Flask

from app import create_app
from app.clock import Clock
from app.context import CLOCK_CONFIG_KEY, app_message_config, app_transport_factory, runner_id
from app.extensions import current_session
from app.services.dispatch_send import dispatch_tick
from app.services.queue_build import activate_due
from app.services.runtime_settings import get_runtime_settings
from tests.process_harness import FileClock, runner_settings

IDLE_PAUSE_SECONDS = 0.02


def loop(app: Flask, clock: Clock, folder: Path) -> None:
    """Tick until told to stop; inside the app's context."""
    session = current_session()
    transport_factory = app_transport_factory(app)
    config = app_message_config(app)
    me = runner_id()
    parent = os.getppid()
    (folder / "ready").write_text(me)
    # Gone parent: the test that started it died; no runner is left behind.
    while not (folder / "stop").exists() and os.getppid() == parent:
        activate_due(session, clock)
        runtime = get_runtime_settings(session)
        result = dispatch_tick(session, transport_factory, clock, runtime, me, config=config)
        if result.paused or result.stopped:
            logging.warning("tick: paused %s, stopped %r", result.paused, result.stopped)
        if not result.claimed:
            time.sleep(IDLE_PAUSE_SECONDS)


def run_runner(database_url: str, smtp_url: str, clock_file: str, folder: str) -> None:
    settings = runner_settings(database_url, smtp_url, Path(folder) / "instance")
    app = create_app(settings)
    clock = FileClock(Path(clock_file))
    app.config[CLOCK_CONFIG_KEY] = clock
    with app.app_context():
        loop(app, clock, Path(folder))


def forked_runner(arguments: list[str]) -> NoReturn:
    """The child's life: output to its log, the runner, its exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    folder = Path(arguments[3])
    log = os.open(folder / "runner.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    status = 1
    try:
        run_runner(*arguments)
        status = 0
    except BaseException:
        traceback.print_exc()
    finally:
        (folder / "exit").write_text(str(status))
        sys.stderr.flush()
        os._exit(status)


def fork_server() -> None:
    """One forked runner per input line; its pid back on a line."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    for line in sys.stdin:
        arguments = json.loads(line)
        pid = os.fork()
        if pid == 0:
            forked_runner(arguments)
        print(pid, flush=True)


def main() -> None:
    if sys.argv[1:] == ["--fork-server"]:
        fork_server()
        return
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    run_runner(*sys.argv[1:])


if __name__ == "__main__":
    main()
