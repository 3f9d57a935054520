"""``sluice bounces classify``: one result per file, in input order, even
for a file that cannot be read; no database or settings needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from app.cli.bounces import bounces_group

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
FIELDS = {
    "file",
    "is_bounce",
    "kind",
    "reason",
    "recipient",
    "status",
    "diagnostic",
    "queue_item_id",
}


def test_json_lines_come_in_input_order_with_every_field(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.eml")
    files = [str(FIXTURES / "lhost-exim-02.eml"), missing, str(FIXTURES / "arf-01.eml")]
    result = CliRunner().invoke(bounces_group, ["classify", "--json", *files])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["file"] for line in lines] == files
    assert all(set(line) >= FIELDS for line in lines)
    assert (lines[0]["kind"], lines[0]["recipient"]) == ("hard", "kijitora@example.jp")
    assert lines[1]["kind"] is None and "cannot read" in lines[1]["error"]
    assert lines[2]["kind"] == "complaint" and lines[2]["is_bounce"] is False


def test_readable_output_is_one_line_per_file() -> None:
    files = [str(FIXTURES / "rfc3834-01.eml"), str(FIXTURES / "lhost-gmx-01.eml")]
    result = CliRunner().invoke(bounces_group, ["classify", *files])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2
    assert "autoreply" in lines[0]
    assert "soft (mailboxfull, shironeko@example.jp, 5.2.2)" in lines[1]


def test_the_installed_command_runs_without_settings_or_database(tmp_path: Path) -> None:
    sluice = Path(sys.executable).parent / "sluice"
    # An unknown SLUICE_* variable would stop the app: this command never
    # builds it.
    environment = {"PATH": "/usr/bin:/bin", "SLUICE_NOT_A_SETTING": "1"}
    finished = subprocess.run(
        [str(sluice), "bounces", "classify", "--json", str(FIXTURES / "lhost-qmail-01.eml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["kind"] == "hard"
    assert not (tmp_path / "instance").exists()
