"""Benchmark: import N generated contacts from one CSV file.

    .venv/bin/python bench/import_contacts.py [--rows 100000] [--database URL]

``--database`` as in ``bench_support``: a fresh SQLite file by default, or a
fresh database created on the given PostgreSQL server and dropped after. The CSV is
written to a temporary file in a stream first, so generating it costs no
memory; only the import is timed. Targets: 100,000 rows in at most 30 s,
peak RSS at most 150 MB.

The data looks like a real export: semicolon-delimited with a BOM, half the
addresses at large mailbox providers and half at a few thousand company
domains, some typos of provider domains, some invalid addresses, duplicates
of earlier rows with other values, quoted notes with commas and newlines.

The last line printed is one JSON object:
``{"rows": …, "database": "sqlite"|"postgresql", "seconds": …, "peak_rss_mb": …}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.clock import SystemClock
from app.services.addresses import own_sending_addresses
from app.services.contact_csv import RejectedRow, RejectedRowsWriter
from app.services.contact_import import ImportSummary, import_contacts
from bench_support import bench_database, log, migrated_session, peak_rss_mb

PROVIDERS = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "gmx.de", "web.de", "aol.com")
TYPOS = ("gmial.com", "hotmal.com", "yaho.com", "outlok.com")
WORDS = ("acme", "globex", "initech", "umbrella", "stark", "wayne", "tyrell", "cyberdyne", "hooli")
TLDS = ("com", "de", "fr", "co.uk", "io", "org", "net")
COMPANY_DOMAINS = 5000
HEADER = ("Email", "First Name", "Last Name", "Company", "Type", "City", "Phone", "Notes")


def address(index: int) -> str:
    """The address of row ``index``; a function of the index alone, so a
    duplicate can be made without remembering earlier rows."""
    if index % 2 == 0:
        domain = PROVIDERS[index % len(PROVIDERS)]
    else:
        company = index % COMPANY_DOMAINS
        domain = f"{WORDS[company % len(WORDS)]}{company}.{TLDS[company % len(TLDS)]}"
    return f"person.{index}@{domain}"


def generated_rows(count: int, seed: int) -> Iterator[list[str]]:
    chance = random.Random(seed)
    for index in range(count):
        roll = chance.random()
        email = address(index)
        if roll < 0.02 and index > 0:  # a duplicate of an earlier row, with other values
            email = address(chance.randrange(index)).upper()
        elif roll < 0.03:
            email = f"person.{index}@{chance.choice(TYPOS)}"
        elif roll < 0.04:
            email = f"person.{index} at example.com"  # rejected
        notes = ""
        if roll > 0.9:
            notes = f'Met at "Expo {index % 30}", booth {index % 7};\nfollow up, maybe'
        yield [
            email,
            f"First{index}",
            f"Last{index}",
            f"{WORDS[index % len(WORDS)].title()} GmbH" if index % 2 else "",
            ("lead", "contact", "client", "")[index % 4],
            ("Paris", "Berlin", "Lyon", "Köln", "")[index % 5],
            f"+49 30 {index:07d}" if index % 3 else "",
            notes,
        ]


def write_csv(path: Path, count: int, seed: int) -> None:
    """Write the file row by row: nothing but the current row is in memory."""
    with path.open("w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file, delimiter=";")
        writer.writerow(HEADER)
        for row in generated_rows(count, seed):
            writer.writerow(row)


def run_import(session: Session, source: Path, rejected_path: Path) -> ImportSummary:
    with source.open("rb") as data, rejected_path.open("w", encoding="utf-8", newline="") as out:
        rejected_writer = RejectedRowsWriter(out)

        def on_rejected(rejected: RejectedRow) -> None:
            rejected_writer.write(rejected)

        return import_contacts(
            session,
            data,
            list_name="Benchmark",
            update=False,
            default_type=None,
            clock=SystemClock(),
            own_addresses=own_sending_addresses(session, "bounces@example.com"),
            on_rejected=on_rejected,
            source_name=source.name,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database", help="SQLite or PostgreSQL (admin) URL, or 'postgresql'")
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="sluice-bench-") as folder,
        bench_database(arguments.database) as database_url,
    ):
        workdir = Path(folder)
        source = workdir / "contacts.csv"
        write_csv(source, arguments.rows, arguments.seed)
        with migrated_session(database_url) as session:
            started = time.perf_counter()
            summary = run_import(session, source, workdir / "contacts.rejected.csv")
            seconds = time.perf_counter() - started
        log(
            f"{source.stat().st_size / 1e6:.1f} MB file: {summary.rows} rows, "
            f"{summary.created} created, {summary.merged} merged, {summary.rejected} rejected, "
            f"{summary.warnings} warnings"
        )
    result = {
        "rows": arguments.rows,
        "database": make_url(database_url).get_backend_name(),
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
