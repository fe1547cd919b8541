"""Records throughput: durable adds per second from 8 writer threads, per store and path.

    PYTHONPATH=. python benchmarks/bench_records.py [--records 20000] [--threads 8] [--json]

Every ``add()`` measured here has returned only once its record is committed (group commit), so the
figures are for durable writes. Cases:
  sqlite (NORMAL)   default: WAL, synchronous=NORMAL (survives a process crash)
  sqlite (FULL)     synchronous=FULL (also survives power loss: one fsync per group commit)
  open_store        what the service uses: SQLite wrapped in the spool, primary healthy
  spool path        primary down for real (Cassandra on a refused port): every record goes to the spool
  cassandra         only when CASSANDRA_CONTACT_POINTS is set; a throw-away keyspace, dropped afterwards

``--images`` measures the request images stored with their records instead: per engine, the
latency of ``add(record, image)`` and ``get_image`` for a 20 KB image, one call at a time (p50/p99),
and the 8-thread rate of adds with and without the image in the same run.

    PYTHONPATH=. python benchmarks/bench_records.py --images [--image-kb 20] [--calls 500] [--json]
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


def add_concurrently(store: RecordStore, batches: list[list[PredictionRecord]]) -> float:
    """Durable adds per second, one thread per batch, all released at once (records built beforehand)."""
    start = threading.Barrier(len(batches) + 1)
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
    return sum(map(len, batches)) / elapsed


def measure(store: RecordStore, total: int, threads: int) -> float:
    """Records per second for ``total`` adds split over ``threads`` threads."""
    per_thread = total // threads
    return add_concurrently(store, [[_record(n * per_thread + i) for i in range(per_thread)] for n in range(threads)])


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


def _image_record(i: int, image: bytes) -> PredictionRecord:
    import dataclasses
    import hashlib

    return dataclasses.replace(_record(i), image_sha256=hashlib.sha256(image).hexdigest())


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
    }


def image_case(name: str, store: RecordStore, image_kb: int, calls: int, total: int, threads: int) -> dict:
    """Latency of one add with an image and of one image read, then 8-thread add rates with and without."""
    image = b"\x89PNG\r\n\x1a\n" + os.urandom(image_kb * 1024 - 8)
    records = [_image_record(i, image) for i in range(calls)]
    writes, reads = [], []
    for record in records:
        began = time.perf_counter()
        store.add(record, image)
        writes.append(time.perf_counter() - began)
    for record in records:
        began = time.perf_counter()
        data = store.get_image(record.request_id)
        reads.append(time.perf_counter() - began)
        assert data == image
    rates = {}
    for label in ("without image", "with image", "without image again"):
        per_thread = total // threads
        batches = [[_image_record(n * per_thread + i, image) for i in range(per_thread)] for n in range(threads)]
        with_image = label == "with image"
        errors: list[BaseException] = []

        def run(batch: list[PredictionRecord], with_image: bool = with_image, errors: list = errors) -> None:
            try:
                for record in batch:
                    store.add(record, image if with_image else None)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        workers = [threading.Thread(target=run, args=(batch,)) for batch in batches]
        began = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if errors:
            raise RuntimeError(f"writer failed: {errors[0]!r}")
        rates[label] = round(per_thread * threads / (time.perf_counter() - began))
    return {
        "case": name,
        "image_kb": image_kb,
        "calls": calls,
        "write": _percentiles(writes),
        "read": _percentiles(reads),
        "records_per_s": rates,
        "threads": threads,
    }


def run_image_cases(image_kb: int, calls: int, total: int, threads: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "records.sqlite3")
        try:
            results.append(image_case("sqlite (NORMAL)", store, image_kb, calls, total, threads))
        finally:
            store.close()
    if os.environ.get("CASSANDRA_CONTACT_POINTS", "").strip():
        from digitrec.records.cassandra_store import cassandraModule

        config = RecordsConfig.from_env(keyspace=f"digitrec_bench_{uuid.uuid4().hex[:10]}")
        store = cassandraModule(config=config)
        try:
            store.init_schema()
            name = f"cassandra ({config.consistency}, {','.join(config.contact_points)})"
            results.append(image_case(name, store, image_kb, calls, total, threads))
        finally:
            store.drop_keyspace()
            store.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", action="store_true", help="measure image writes and reads (see above)")
    parser.add_argument("--image-kb", type=int, default=20, help="image size for --images (default 20 KB)")
    parser.add_argument("--calls", type=int, default=500, help="timed single calls for --images (default 500)")
    parser.add_argument("--records", type=int, default=20000, help="records per case (default 20000)")
    parser.add_argument("--threads", type=int, default=8, help="writer threads (default 8)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.images:
        results = run_image_cases(args.image_kb, args.calls, min(args.records, 8000), args.threads)
        if args.json:
            print(json.dumps(results, indent=2))
            return 0
        for row in results:
            w, r, rates = row["write"], row["read"], row["records_per_s"]
            print(
                f"{row['case']}: {row['image_kb']} KB image, {row['calls']} calls one at a time: "
                f"add(record, image) p50 {w['p50_ms']} ms p99 {w['p99_ms']} ms; "
                f"get_image p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms"
            )
            print(f"  {row['threads']} threads, records/s: " + ", ".join(f"{k} {v}" for k, v in rates.items()))
        if not os.environ.get("CASSANDRA_CONTACT_POINTS"):
            print("(cassandra: skipped, CASSANDRA_CONTACT_POINTS is not set)")
        return 0
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
