"""The database fixture really gives each backend, and CI cannot skip one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:9/test"


def test_session_is_on_the_requested_backend(session: Session, database_url: str) -> None:
    expected = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    assert session.get_bind().dialect.name == expected
    assert session.execute(text("SELECT 1")).scalar_one() == 1


def _run_backend_test_with_unreachable_postgres(require: bool) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "SLUICE_TEST_POSTGRES_URL": UNREACHABLE_POSTGRES,
        "SLUICE_REQUIRE_SERVICES": "1" if require else "0",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::test_session_is_on_the_requested_backend",
            "-k",
            "postgresql",
        ],
        cwd=PROJECT_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_postgres_fails_when_services_are_required() -> None:
    result = _run_backend_test_with_unreachable_postgres(require=True)
    assert result.returncode == 1, result.stdout
    assert "required service missing" in result.stdout


def test_missing_postgres_skips_locally_with_the_reason() -> None:
    result = _run_backend_test_with_unreachable_postgres(require=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "PostgreSQL is not reachable" in result.stdout
