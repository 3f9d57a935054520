"""Benchmark: resolve the audience of a mass email over N contacts.

Builds a fresh, migrated database, fills it inside the database
(``bench_support.generate_audience``: PostgreSQL ``generate_series``, SQLite
a recursive CTE; never a Python list of rows):

- N contacts with unique addresses; every 97th has no address, every 53rd an
  invalid one, every 31st has opted out;
- 3 target lists of about N/2 overlapping members (id even; id mod 4 in
  {1, 2}; id mod 14 < 7), filled with ``add_members`` (``INSERT … SELECT``);
- 2 excluding lists of about N/20 (id mod 20 = 3; id mod 21 = 10);

then runs ``ANALYZE`` and times ``resolve_audience`` alone.

Usage::

    .venv/bin/python bench/audience.py [--database URL|postgresql] [--contacts N]

Without ``--database`` a temporary SQLite file is used. A PostgreSQL URL is
an admin URL: a database ``sluice_bench_<random>`` is created on that server
and dropped at the end (``postgresql`` alone means
``postgresql+psycopg://postgres@127.0.0.1:5432/test``).

Targets (PostgreSQL, 1,000,000 contacts): at most 20 s; peak RSS of this
process at most 150 MB and flat between 100k and 1M contacts. The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

from app.services.audience import AudienceSummary, resolve_audience
from bench_support import bench_database, generate_audience, log, migrated_session, peak_rss_mb


def run(database_url: str, count: int) -> tuple[AudienceSummary, float, str]:
    with migrated_session(database_url) as session:
        dialect = session.get_bind().dialect.name
        targets, excluding = generate_audience(session, count)
        started = time.perf_counter()
        summary = resolve_audience(session, targets, excluding)
        seconds = time.perf_counter() - started
        session.rollback()
    return summary, seconds, dialect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="SQLite or PostgreSQL (admin) URL, or 'postgresql'")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args()
    with bench_database(args.database) as url:
        summary, seconds, dialect = run(url, args.contacts)
    log(f"summary: {summary}")
    result = {
        "contacts": args.contacts,
        "recipients": summary.recipient,
        "seconds": round(seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
        "database": dialect,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
