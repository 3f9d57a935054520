"""``sluice bounces``: the bounce pipeline from the command line.

``classify FILE...`` reads returned messages from files and prints what
``bounce.read`` makes of each: no database and no Flask app (the command is
also served before the app is built, see ``app.cli.main``). Its
``queue_item_id`` is the one a verified VERP return address names, decoded
with the boot settings alone (the secret key and ``SLUICE_BOUNCE_ADDRESS``;
the VERP domain is the bounce address's unless ``--verp-domain`` names the
``bounce_domain`` runtime setting); null when those are not set.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

import bounce
from bounce.report import BounceReport
from bounce.verp import VerpCodec, codec_for, first_verified
from config import ConfigError, load_settings

# Bounces are small; a file larger than this is read only in part
# (bounce.mime reads the first MAX_BYTES of a message anyway).
READ_LIMIT = 16 * 1024 * 1024


@click.group("bounces", help="Returned messages: classify files, poll the bounce mailbox, test it.")
def bounces_group() -> None:
    """The ``bounces`` command group."""


def result_object(
    path: str, report: BounceReport | None, error: str | None = None
) -> dict[str, Any]:
    """The JSON line of one file (issue 7's field list, plus ``error``
    when the file could not be read)."""
    found: dict[str, Any] = {
        "file": path,
        "is_bounce": bool(report and report.is_bounce),
        "kind": report.kind.value if report and report.kind else None,
        "reason": report.reason if report else None,
        "recipient": report.recipient if report else None,
        "status": report.status if report else None,
        "diagnostic": report.diagnostic if report else None,
        "queue_item_id": report.queue_item_id if report else None,
    }
    if error:
        found["error"] = error
    return found


def classify_file(path: str, codec: VerpCodec | None = None) -> dict[str, Any]:
    """Read and classify one file; an unreadable file is a result too."""
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(READ_LIMIT)
    except OSError as error:
        return result_object(path, None, error=f"cannot read: {error.strerror or error}")
    report = bounce.read(raw)
    if codec is not None and report.queue_item_id is None:
        report = replace(report, queue_item_id=verified_item(report, codec))
    return result_object(path, report)


def verified_item(report: BounceReport, codec: VerpCodec) -> int | None:
    """The queue item of the first return address whose VERP MAC verifies."""
    return first_verified(codec, report.return_addresses)[0].item_id


def settings_codec(verp_domain: str | None) -> VerpCodec | None:
    """The VERP codec the boot settings allow, or None. Never creates the
    instance's secret key file (classifying files must change nothing)."""
    try:
        settings = load_settings()
    except ConfigError:
        return None
    secret = settings.secret_key
    key_file = Path(settings.instance_path) / "secret_key"
    if not secret and key_file.is_file():
        secret = key_file.read_text(encoding="ascii", errors="replace").strip()
    local, _, domain = settings.bounce_address.rpartition("@")
    try:
        return codec_for(local, verp_domain or domain, secret)
    except ValueError:
        return None


def readable_line(found: dict[str, Any]) -> str:
    """One line per file for a person."""
    if found.get("error"):
        return f"{found['file']}: {found['error']}"
    kind = found["kind"] or ("bounce" if found["is_bounce"] else "not a bounce")
    details = [
        value
        for value in (found["reason"], found["recipient"], found["status"])
        if value and value != kind
    ]
    line = f"{found['file']}: {kind}"
    if details:
        line += " (" + ", ".join(details) + ")"
    if found["diagnostic"]:
        line += f": {found['diagnostic'][:160]}"
    return line


@bounces_group.command("classify")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, in input order.")
@click.option(
    "--verp-domain",
    default=None,
    help="The VERP return addresses' domain, when the bounce_domain setting is not "
    "the bounce address's domain.",
)
def classify_command(files: tuple[str, ...], as_json: bool, verp_domain: str | None) -> None:
    """Classify returned messages: hard or soft bounce, complaint,
    auto-reply, or not a bounce. Needs no database."""
    codec = settings_codec(verp_domain)
    for path in files:
        found = classify_file(path, codec)
        if as_json:
            click.echo(json.dumps(found, ensure_ascii=False))
        else:
            click.echo(readable_line(found))
