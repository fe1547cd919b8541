"""What a reading costs the records store: adds per second of reading records (4 digits with their boxes,
one refused mark) against one-digit records, in alternating rounds of one run, per engine.

    PYTHONPATH=. python benchmarks/bench_reading_records.py [--records 4000] [--rounds 5] [--json]

Each round writes ``--records`` records of one kind to a fresh store (SQLite file; Cassandra table in a
throw-away keyspace when CASSANDRA_CONTACT_POINTS is set) from 8 threads, every ``add`` durable when it
returns, then the other kind; the kinds alternate which goes first. The ratio is reading / digit per
round; the median of the rounds is reported with both rates, so a busy machine moves both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_records import add_concurrently  # noqa: E402

from digitrec.records.config import RecordsConfig  # noqa: E402
from digitrec.records.record import PredictionRecord  # noqa: E402
from digitrec.records.sqlite_store import SQLiteStore  # noqa: E402
from digitrec.records.store import RecordStore  # noqa: E402

THREADS = 8


def digit_record(i: int) -> PredictionRecord:
    probabilities = [0.01] * 10
    probabilities[i % 10] = 0.91
    return PredictionRecord.new(
        model_name="digits", model_version="bench", label=i % 10, class_name=str(i % 10), confidence=0.91,
        probabilities=probabilities, source="api", file_name=f"{i}.png", processing_ms=3.2, in_domain=True,
        domain_score=4.2,
    )  # fmt: skip


def _mark(label: int, x: int, in_domain: bool) -> SimpleNamespace:
    probabilities = [0.01] * 10
    probabilities[label] = 0.91
    return SimpleNamespace(
        label=label, name=str(label), confidence=0.91, probabilities=probabilities, box=(x, 12, 40, 64),
        in_domain=in_domain, domain_score=4.2 if in_domain else -1.5,
    )  # fmt: skip


def reading_record(i: int) -> PredictionRecord:
    text = f"{i % 10000:04d}"
    reading = SimpleNamespace(
        text=text,
        digits=[_mark(int(c), 10 + 50 * n, True) for n, c in enumerate(text)],
        refused=[_mark(0, 220, False)],
        confidence=0.68,
    )
    return PredictionRecord.from_reading(
        reading, model_name="digits", model_version="bench", source="api", file_name=f"{i}.png", processing_ms=9.1
    )


def measure(store: RecordStore, records: list[PredictionRecord]) -> float:
    """Durable adds per second from ``THREADS`` threads."""
    per_thread = len(records) // THREADS
    return add_concurrently(store, [records[n * per_thread : (n + 1) * per_thread] for n in range(THREADS)])


def engine_case(name: str, open_store, total: int, rounds: int) -> dict:
    rates: dict[str, list[float]] = {"digit": [], "reading": []}
    makers = {"digit": digit_record, "reading": reading_record}
    for n in range(rounds):
        order = ("digit", "reading") if n % 2 == 0 else ("reading", "digit")
        for kind in order:
            records = [makers[kind](n * total + i) for i in range(total)]
            store = open_store(f"{kind}{n}")
            try:
                rates[kind].append(measure(store, records))
            finally:
                store.close()
    ratios = [r / d for r, d in zip(rates["reading"], rates["digit"])]
    return {
        "engine": name,
        "records": total,
        "threads": THREADS,
        "rounds": rounds,
        "digit_per_s": round(statistics.median(rates["digit"])),
        "reading_per_s": round(statistics.median(rates["reading"])),
        "reading_over_digit": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000, help="records per round and kind (default 4000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(
            engine_case("sqlite", lambda tag: SQLiteStore(Path(tmp) / tag / "r.sqlite3"), args.records, args.rounds)
        )
    if os.environ.get("CASSANDRA_CONTACT_POINTS", "").strip():
        from digitrec.records.cassandra_store import cassandraModule

        config = RecordsConfig.from_env(keyspace=f"digitrec_bench_{uuid.uuid4().hex[:10]}")
        admin = cassandraModule(config=config)
        admin.create_keyspace()
        try:

            def open_table(tag: str) -> RecordStore:
                store = cassandraModule(config=RecordsConfig.from_env(keyspace=config.keyspace, table=f"t_{tag}"))
                store.init_schema()
                return store

            results.append(engine_case(f"cassandra ({config.consistency})", open_table, args.records, args.rounds))
        finally:
            admin.drop_keyspace()
            admin.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for row in results:
        print(
            f"{row['engine']}: {row['threads']} threads, {row['records']} records x {row['rounds']} rounds: "
            f"one-digit {row['digit_per_s']}/s, reading {row['reading_per_s']}/s, "
            f"reading/digit {row['reading_over_digit']} (rounds {row['ratios']})"
        )
    if not os.environ.get("CASSANDRA_CONTACT_POINTS"):
        print("(cassandra: skipped, CASSANDRA_CONTACT_POINTS is not set)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
