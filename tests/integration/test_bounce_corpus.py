"""The gate of issue 7: ``sluice bounces classify --json`` scored on the
labelled bounce corpus by the corpus's own ``evaluate.py``.

The corpus is found through ``SLUICE_BOUNCE_CORPUS``, by default
``../shared/bounce-corpus`` from the repository root. Missing: skipped
locally, a failure under ``SLUICE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import service_missing

REPO_ROOT = Path(__file__).resolve().parents[2]
SLUICE = Path(sys.executable).parent / "sluice"
# Issue 7's thresholds, unchanged.
GATE = (
    "--min-kind-accuracy", "0.95",
    "--min-hard-precision", "0.99",
    "--min-hard-recall", "0.95",
    "--min-recipient-accuracy", "0.98",
    "--min-status-accuracy", "0.95",
    "--max-crashes", "0",
)  # fmt: skip


def corpus_dir() -> Path:
    configured = os.environ.get("SLUICE_BOUNCE_CORPUS")
    base = Path(configured) if configured else Path("..") / "shared" / "bounce-corpus"
    return base if base.is_absolute() else (REPO_ROOT / base).resolve()


@pytest.fixture(scope="module")
def evaluator() -> Path:
    script = corpus_dir() / "evaluate.py"
    if not script.is_file():
        service_missing(
            f"bounce corpus not found at {corpus_dir()} (set SLUICE_BOUNCE_CORPUS to its folder)"
        )
    if not SLUICE.is_file():
        pytest.fail(f"the sluice entry point is not installed next to {sys.executable}")
    return script


def test_the_cli_passes_the_corpus_gate(evaluator: Path) -> None:
    command = f"{SLUICE} bounces classify --json"
    finished = subprocess.run(
        [sys.executable, str(evaluator), "--cmd", command, "--exclude-disputed", "--dedupe",
         "--json", "--show-errors", "5", *GATE],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )  # fmt: skip
    report = finished.stdout
    figures = json.loads(report.strip().splitlines()[-1])
    assert figures["crashes"] == 0, report
    assert figures["missing_outputs"] == 0 and figures["invalid_outputs"] == 0, report
    assert figures["thresholds_failed"] == [], report
    assert finished.returncode == 0, report + finished.stderr
