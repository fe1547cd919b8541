"""Records throughput: durable adds per second from 8 writer threads, per store and path.

    PYTHONPATH=. python benchmarks/bench_records.py [--records 20000] [--threads 8] [--json]

Every ``add()`` measured here has returned only once its record is committed (group commit), so the
figures are for durable writes. Cases:
  sqlite (NORMAL)   default: WAL, synchronous=NORMAL (survives a process crash)
  sqlite (FULL)     synchronous=FULL (also survives power loss: one fsync per group commit)
  open_store        what the service uses: SQLite wrapped in the spool, primary healthy
  spool path        primary down for real (Cassandra on a refused port): every record goes to the spool
  cassandra         only when CASSANDRA_CONTACT_POINTS is set; a throw-away keyspace, dropped afterwards
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitrec.records.config import RecordsConfig  # noqa: E402
from digitrec.records.factory import open_store  # noqa: E402
from digitrec.records.record import PredictionRecord  # noqa: E402
from digitrec.records.sqlite_store import SQLiteStore  # noqa: E402
from digitrec.records.store import RecordStore  # noqa: E402


def _record(i: int) -> PredictionRecord:
    probabilities = [0.01] * 10
    probabilities[i % 10] = 0.91
    return PredictionRecord.new(
        model_name="digits",
        model_version="bench",
        label=i % 10,
        class_name=str(i % 10),
        confidence=0.91,
        probabilities=probabilities,
        source="api",
        file_name=f"{i}.png",
        image_path=f"images/{i}.png",
        processing_ms=3.2,
    )


def measure(store: RecordStore, total: int, threads: int) -> float:
    """Records per second for ``total`` adds split over ``threads`` threads (records built beforehand)."""
    per_thread = total // threads
    batches = [[_record(n * per_thread + i) for i in range(per_thread)] for n in range(threads)]
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run(batch: list[PredictionRecord]) -> None:
        start.wait()
        try:
            for record in batch:
                store.add(record)
        except BaseException as exc:  # noqa: BLE001 - reported after the run
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(batch,)) for batch in batches]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} writer(s) failed: {errors[0]!r}")
    return per_thread * threads / elapsed


def run_cases(total: int, threads: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for mode in ("NORMAL", "FULL"):
            store = SQLiteStore(base / mode / "records.sqlite3", synchronous=mode)
            results.append(
                {
                    "case": f"sqlite ({mode})",
                    "records": total,
                    "threads": threads,
                    "records_per_s": measure(store, total, threads),
                }
            )
            store.close()

        store = open_store(RecordsConfig.from_env({}, data_dir=base / "service"))
        results.append(
            {
                "case": "open_store (sqlite + spool)",
                "records": total,
                "threads": threads,
                "records_per_s": measure(store, total, threads),
            }
        )
        store.close()

        down = RecordsConfig.from_env(
            {"CASSANDRA_CONTACT_POINTS": "127.0.0.1", "CASSANDRA_PORT": "1", "CASSANDRA_CONNECT_TIMEOUT": "1"},
            data_dir=base / "down",
            spool_retry_min=5.0,
            spool_retry_max=30.0,
        )
        store = open_store(down)
        store.add(_record(0))  # the first add discovers the outage (one connect attempt)
        results.append(
            {
                "case": "spool path (primary down)",
                "records": total,
                "threads": threads,
                "records_per_s": measure(store, total, threads),
                "spool_depth": store.spool_depth,
            }
        )
        store.close()

    if os.environ.get("CASSANDRA_CONTACT_POINTS", "").strip():
        results.append(_cassandra_case(total, threads))
    return results


def _cassandra_case(total: int, threads: int) -> dict:
    from digitrec.records.cassandra_store import cassandraModule

    keyspace = f"digitrec_bench_{uuid.uuid4().hex[:10]}"
    config = RecordsConfig.from_env(keyspace=keyspace)
    store = cassandraModule(config=config)
    try:
        store.init_schema()
        rate = measure(store, total, threads)
    finally:
        store.drop_keyspace()
        store.close()
    return {
        "case": f"cassandra ({config.consistency}, {','.join(config.contact_points)})",
        "records": total,
        "threads": threads,
        "records_per_s": rate,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000, help="records per case (default 20000)")
    parser.add_argument("--threads", type=int, default=8, help="writer threads (default 8)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    results = run_cases(args.records, args.threads)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'case':<40} {'records':>8} {'threads':>7} {'records/s':>10}")
    for row in results:
        print(f"{row['case']:<40} {row['records']:>8} {row['threads']:>7} {row['records_per_s']:>10.0f}")
    if not os.environ.get("CASSANDRA_CONTACT_POINTS"):
        print("(cassandra: skipped, CASSANDRA_CONTACT_POINTS is not set)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
