"""`sluice web` really serves the app over HTTP (not only through Flask's
test client, which shares the test's application context)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from app.services import caught_mail
from app.services.mail_catcher import default_directory
from tests.conftest import TEST_SECRET_KEY
from tests.waiting import wait_until
from tests.web_client import token_in

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "a long enough admin password"


def logged_in_opener(base_url: str) -> urllib.request.OpenerDirector:
    """An HTTP client with a cookie jar, logged in as the first admin the
    way a browser does (the form's CSRF token, then the POST)."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{base_url}/login", timeout=10) as response:
        token = token_in(response.read().decode())
    form = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "csrf_token": token}
    with opener.open(
        f"{base_url}/login", data=urllib.parse.urlencode(form).encode(), timeout=10
    ) as response:
        assert b"Logged in as" in response.read()
    return opener


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(process: subprocess.Popen[str], timeout: float = 30) -> str:
    """Read the server's output until waitress reports the bound socket;
    returns the output so far.

    A watchdog kills a server that never says so, which ends the output and
    fails the test instead of hanging it.
    """
    assert process.stdout is not None
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    seen = []
    try:
        for line in process.stdout:
            seen.append(line)
            if "Serving on" in line:
                return "".join(seen)
    finally:
        watchdog.cancel()
    pytest.fail(f"server did not start serving within {timeout} s:\n{''.join(seen)}")


@pytest.mark.parametrize("command", ["web", "run"])
def test_server_answers_over_http(database_url: str, tmp_path: Path, command: str) -> None:
    port = free_port()
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("SLUICE_")
    } | {
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_INSTANCE_PATH": str(tmp_path / "instance"),
        "SLUICE_SECRET_KEY": TEST_SECRET_KEY,
    }
    sluice = [sys.executable, "-c", "from app.cli import main; main()"]
    options = ["--port", str(port)]
    if command == "run":  # as `make run` does: the job runner needs the settings
        subprocess.run([*sluice, "init"], env=environment, check=True, capture_output=True)
        options += ["--catcher-port", str(free_port())]
    process = subprocess.Popen(
        [*sluice, command, *options],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_serving(process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
            assert b'"status":"ok"' in response.read().replace(b" ", b"")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            # Redirected to the log-in page: nothing is shown to a visitor.
            assert response.url == f"http://127.0.0.1:{port}/login?next=/"
            assert b"<h1>Log in</h1>" in response.read()
    finally:
        process.terminate()
        # `run` first lets the job runs under way finish.
        process.wait(timeout=30)


def test_run_sends_a_scheduled_campaign_into_its_mail_catcher(
    database_url: str, tmp_path: Path
) -> None:
    """What `make run` gives a developer: schedule the demo campaign, and its
    mail is caught (nothing leaves the machine) and shown at /dev/mail."""
    port, catcher_port = free_port(), free_port()
    instance = tmp_path / "instance"
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("SLUICE_")
    } | {
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_INSTANCE_PATH": str(instance),
        "SLUICE_SECRET_KEY": TEST_SECRET_KEY,
        "SLUICE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    sluice = [sys.executable, "-c", "from app.cli import main; main()"]

    def cli(*args: str) -> str:
        done = subprocess.run(
            [*sluice, *args], check=False, env=environment, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    cli("init")
    cli("demo")
    cli(
        "settings",
        "set",
        "company_name=Demo",
        "postal_address=1 Main St",
        "tick_interval_seconds=5",
    )
    cli("campaigns", "schedule", "1", "--confirm-can-spam")
    process = subprocess.Popen(
        [*sluice, "run", "--port", str(port), "--catcher-port", str(catcher_port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = wait_until_serving(process)
        wait_until(
            lambda: "complete" in cli("status", "1").splitlines()[0],
            what="the demo mass email is complete",
            # Real work of a runner in another process: generous, because a
            # busy 2-core machine once needed more than a minute.
            timeout=180,
            interval=0.5,
        )
        status = cli("status", "1")
        sent = int(re.search(r"sent\s+(\d+)", status).group(1))  # type: ignore[union-attr]
        caught = caught_mail.list_messages(default_directory(instance), per_page=1)
        assert sent > 100 and caught.total == sent
        opener = logged_in_opener(f"http://127.0.0.1:{port}")
        with opener.open(f"http://127.0.0.1:{port}/dev/mail", timeout=10) as response:
            assert f"/dev/mail/{caught.messages[0].id}".encode() in response.read()
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert f"Mail catcher on smtp://127.0.0.1:{catcher_port}" in output
    assert f"http://127.0.0.1:{port}/dev/mail" in output
