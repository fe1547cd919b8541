"""Wall time of one durable record write, with WAL checkpoints in the background thread or in COMMIT.

    python benchmarks/bench_checkpoint.py [--rounds 5] [--writes 400] [--gap-ms 2] [--json]

Two SQLite stores on the same disk: the default (``background_checkpoints``: a thread checkpoints)
and SQLite's own behaviour (the commit that takes the log past 1,000 pages checkpoints and syncs).
Each round writes ``--writes`` records, each with a 2.7 KB image like a request's PNG, one at a time
with ``--gap-ms`` between them (a client at c=1), first to one store and then to the other. Printed:
p50 / p99 / max of the wall time of ``store.add`` per variant, over all rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digitrec.records.record import PredictionRecord  # noqa: E402
from digitrec.records.sqlite_store import SQLiteStore  # noqa: E402


def record_with_image(image: bytes) -> PredictionRecord:
    return PredictionRecord.new(
        model_name="digits",
        model_version="2026-11-21",
        label=7,
        class_name="7",
        confidence=0.99,
        probabilities=[0.001] * 7 + [0.99] + [0.001] * 2,
        source="api",
        file_name="digit.png",
        image_sha256=hashlib.sha256(image).hexdigest(),
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--writes", type=int, default=400, help="writes per variant and round (default 400)")
    parser.add_argument("--gap-ms", type=float, default=2.0, help="pause between writes (default 2 ms)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    image = b"\x89PNG\r\n\x1a\n" + os.urandom(2700)
    variants = {"background thread": True, "in COMMIT (SQLite default)": False}
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as tmp:
        stores = {
            name: SQLiteStore(Path(tmp) / f"{i}.sqlite3", background_checkpoints=background)
            for i, (name, background) in enumerate(variants.items())
        }
        try:
            for _ in range(args.rounds):
                for name, store in stores.items():
                    for _ in range(args.writes):
                        record = record_with_image(image)
                        started = time.perf_counter()
                        store.add(record, image)
                        times[name].append((time.perf_counter() - started) * 1000)
                        time.sleep(args.gap_ms / 1000)
        finally:
            for store in stores.values():
                store.close()
    result = {
        name: {
            "writes": len(values),
            "p50_ms": round(statistics.median(values), 3),
            "p99_ms": round(percentile(values, 0.99), 3),
            "max_ms": round(max(values), 3),
            "over_5_ms": sum(v > 5 for v in values),
        }
        for name, values in times.items()
    }
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"load_average": load, "variants": result}))
        return 0
    print(f"store.add(record + 2.7 KB image), wall ms, {args.rounds} rounds x {args.writes} (load average {load:.2f})")
    for name, row in result.items():
        print(
            f"  {name:28s} p50 {row['p50_ms']:7.3f}  p99 {row['p99_ms']:7.3f}  max {row['max_ms']:8.3f}"
            f"  writes over 5 ms: {row['over_5_ms']} of {row['writes']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
