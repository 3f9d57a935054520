"""`sluice web` really serves the app over HTTP (not only through Flask's
test client, which shares the test's application context)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET_KEY


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_serving(process: subprocess.Popen[str], timeout: float = 30) -> None:
    """Read the server's output until waitress reports the bound socket.

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
                return
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
    if command == "run":  # as `make run` does: the job runner needs the settings
        subprocess.run([*sluice, "init"], env=environment, check=True, capture_output=True)
    process = subprocess.Popen(
        [*sluice, command, "--port", str(port)],
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
            assert b"Sluice is running" in response.read()
    finally:
        process.terminate()
        # `run` first lets the job runs under way finish.
        process.wait(timeout=30)
