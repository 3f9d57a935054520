"""Benchmark: kill -9 a dispatcher runner at N random moments of a campaign.

    .venv/bin/python bench/crash.py [--database URL|postgresql] [--kills N] [--seed N]

``--database`` as in ``bench_support`` (a fresh SQLite file by default).
Needs the dev extras: the SMTP relay (aiosmtpd) runs in this process.

The drill is ``tests/crash_harness.py``'s, the one
``tests/integration/test_crash.py`` runs with 20 kills: a runner process
(the product's ``activate_due`` + ``dispatch_tick``) is killed with SIGKILL
at a random moment once it is ready (up to ``--max-delay`` seconds of real
work), restarted after the shared fake clock moved past the lease, N
times; then housekeeping, the ledger reconciled with the relay's copies; then
a person's ``retry_interrupted`` and one runner to the end.

Targets: ``duplicates`` 0 (addresses the relay received twice before the
retry) and ``lost`` 0 (items neither sent, queued nor interrupted, sent
but never received, or received but still queued; before and after the
retry). ``interrupted_received`` counts in-doubt items whose message had
arrived: the retry sends them again (``resent_duplicates``, by design:
that is why a person decides). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from flask import current_app

from app import app_settings
from bench_support import bench_database, log, migrated_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", help="SQLite or PostgreSQL (admin) URL, or 'postgresql'")
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--max-delay", type=float, default=1.0, help="seconds before a kill")
    args = parser.parse_args()
    # The drill lives with the tests it serves first; the project's root
    # makes ``tests`` importable from here.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.crash_harness import CrashDrill, run_crash_drill

    seed = args.seed if args.seed is not None else random.randrange(2**32)
    drill = CrashDrill(kills=args.kills, seed=seed, max_delay=args.max_delay)
    with (
        bench_database(args.database) as url,
        migrated_session(url) as session,
        tempfile.TemporaryDirectory(prefix="sluice-crash-") as folder,
    ):
        dialect = session.get_bind().dialect.name
        settings = app_settings(current_app)
        result = run_crash_drill(session, settings, url, Path(folder), drill, log)
    killed, retried = result.after_kills, result.after_retry
    for problem in [*killed.lost, *retried.lost][:20]:
        log(f"lost: {problem}")
    log(f"after the kills: {dict(killed.statuses)}; after the retry: {dict(retried.statuses)}")
    print(
        json.dumps(
            {
                "kills": drill.kills,
                "recipients": result.recipients,
                "duplicates": len(killed.duplicates),
                "lost": len(killed.lost) + len(retried.lost),
                "interrupted": killed.interrupted,
                "interrupted_received": len(killed.interrupted_received),
                "received": killed.received,
                "resent_duplicates": len(retried.duplicates),
                "duration": round(result.seconds, 1),
                "database": dialect,
                "seed": seed,
            }
        )
    )


if __name__ == "__main__":
    main()
