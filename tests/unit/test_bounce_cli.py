"""``sluice bounces classify``: one result per file, in input order, even
for a file that cannot be read; no database or settings needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from app.cli.bounces import bounces_group
from bounce.verp import codec_for

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


def _dsn_to(return_path: str) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.example.org\r\nTo: {return_path}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; ann@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n--B--\r\n"
    ).encode()


def test_the_queue_item_is_the_one_a_verified_verp_address_names(tmp_path: Path) -> None:
    secret = "cli-test-secret"
    codec = codec_for("bounces", "bounce.example.com", secret)
    other_domain = codec_for("bounces", "returns.example.net", secret)
    files = {
        "verp": codec.encode(42),
        "forged": codec.encode(42).replace("+42.", "+43."),
        "other-domain": other_domain.encode(7),
    }
    for name, return_path in files.items():
        (tmp_path / f"{name}.eml").write_bytes(_dsn_to(return_path))
    paths = [str(tmp_path / f"{name}.eml") for name in files]
    environment = {
        "SLUICE_SECRET_KEY": secret,
        "SLUICE_BOUNCE_ADDRESS": "bounces@bounce.example.com",
        "SLUICE_INSTANCE_PATH": str(tmp_path / "instance"),
    }

    plain = CliRunner(env=environment).invoke(bounces_group, ["classify", "--json", *paths])
    other = CliRunner(env=environment).invoke(
        bounces_group, ["classify", "--json", "--verp-domain", "returns.example.net", *paths]
    )
    unset = CliRunner(env={"SLUICE_BOUNCE_ADDRESS": None, "SLUICE_SECRET_KEY": None}).invoke(
        bounces_group, ["classify", "--json", *paths]
    )

    def items(result: Result) -> list[int | None]:
        assert result.exit_code == 0, result.output
        return [json.loads(line)["queue_item_id"] for line in result.output.splitlines()]

    assert items(plain) == [42, None, None]
    assert items(other) == [None, None, 7]
    assert items(unset) == [None, None, None]
    assert json.loads(plain.output.splitlines()[0])["kind"] == "hard"
    assert not (tmp_path / "instance").exists()  # no secret key file was made
