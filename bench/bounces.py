"""Benchmark: the bounce pipeline.

    .venv/bin/python bench/bounces.py [--part classify|poll|all]
                                      [--corpus DIR] [--rounds 5]

``classify`` (this part): every message of the labelled bounce corpus
(``SLUICE_BOUNCE_CORPUS``, by default ``../shared/bounce-corpus`` from the
repository root; ``--corpus`` overrides) is read into memory first (not
timed), then ``bounce.read`` (parse + classify) runs over all of them,
``--rounds`` times, in this one process. Reported: messages per second of
wall time and of CPU time (one core: the figure per core; on a busy shared
machine the CPU figure tells the work from the waiting), the best round
and the median round. Target: at least 2,000 messages/s per core (issue 7).

``poll``: one poll of a Dovecot mailbox holding ``--messages`` (5,000)
bounces of a sent mass email, applied by the bounce service
(``bench/bounce_poll.py`` describes it; ``--database`` as there).

The last line printed is one JSON object:
``{"part": "classify", "messages": …, "rounds": …, "messages_per_second": …,
"cpu_messages_per_second": …, "median_messages_per_second": …,
"corpus": "<folder name>", "python": "3.x.y"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import bounce  # noqa: E402  (after the path set-up above)


def corpus_dir(given: str | None) -> Path:
    configured = given or os.environ.get("SLUICE_BOUNCE_CORPUS")
    base = Path(configured) if configured else Path("..") / "shared" / "bounce-corpus"
    return base if base.is_absolute() else (REPO_ROOT / base).resolve()


def load_messages(folder: Path) -> list[bytes]:
    messages = folder / "messages"
    if not messages.is_dir():
        sys.exit(f"bounce corpus not found at {folder} (set SLUICE_BOUNCE_CORPUS or --corpus)")
    return [path.read_bytes() for path in sorted(messages.glob("*.eml"))]


def classify_part(folder: Path, rounds: int) -> dict[str, Any]:
    raws = load_messages(folder)
    for raw in raws[:50]:  # warm-up: imports, regex compilation, caches
        bounce.read(raw)
    walls: list[float] = []
    cpus: list[float] = []
    for round_number in range(rounds):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for raw in raws:
            bounce.read(raw)
        walls.append(time.perf_counter() - wall_start)
        cpus.append(time.process_time() - cpu_start)
        print(
            f"round {round_number + 1}: {len(raws)} messages in {walls[-1]:.3f} s "
            f"({len(raws) / walls[-1]:.0f} msgs/s wall, {len(raws) / cpus[-1]:.0f} msgs/s CPU)",
            flush=True,
        )
    return {
        "part": "classify",
        "messages": len(raws),
        "rounds": rounds,
        "messages_per_second": round(len(raws) / min(walls), 1),
        "cpu_messages_per_second": round(len(raws) / min(cpus), 1),
        "median_messages_per_second": round(len(raws) / statistics.median(walls), 1),
        "corpus": folder.name,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["classify", "poll", "all"], default="classify")
    parser.add_argument("--corpus", help="the bounce corpus folder (labels.jsonl, messages/)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=5000, help="poll: bounces in the mailbox")
    parser.add_argument("--batch-size", type=int, default=50, help="poll: messages per fetch")
    parser.add_argument("--database", help="poll: SQLite (default) or a PostgreSQL URL")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    if args.part in ("classify", "all"):
        results.append(classify_part(corpus_dir(args.corpus), max(1, args.rounds)))
    if args.part in ("poll", "all"):
        from bounce_poll import poll_part  # needs the app, Dovecot and a database

        results.append(poll_part(args.messages, args.batch_size, args.database))
    print(json.dumps(results[0] if len(results) == 1 else {"parts": results}))


if __name__ == "__main__":
    main()
