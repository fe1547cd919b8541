"""Filtered record pages and dashboard aggregates on a one-million-record SQLite file.

    PYTHONPATH=. python benchmarks/bench_filters.py [--records 1000000] [--db /tmp/digitrec-bench-filters.sqlite3]
        [--repeats 15] [--limit 50] [--keep] [--json]

The file is built once by a bulk insert (rows written straight into the schema the store uses, in one
transaction, without the filter indexes), then opened with ``SQLiteStore``, which adds the filter
indexes: that is the migration an existing database goes through, and its time is reported. With
``--keep`` an existing file is reused. History: 45 days; 85 % digits (version 2026.11 for 30 days,
then 2026.12, with a 1 % canary ``2026.12-canary``), 15 % fashion; labels uniform; confidence mostly
above 0.9 with a tail (about 2 % below 0.5); 2 % corrected, 60 % of those wrong.

For each filter (and combinations) it times the first page and the third page (through cursors)
of ``find(limit=50)``: p50 and max over ``--repeats`` runs. Goal: at most 50 ms per page. Then
``summarize()`` (the dashboard aggregates) for 1, 7 and 30 days.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitrec.records.codec import timeuuid_sort_key  # noqa: E402
from digitrec.records.query import RecordFilter, StatsWindow  # noqa: E402
from digitrec.records.sqlite_store import _COLUMNS, SCHEMA, SQLiteStore  # noqa: E402

UTC = dt.timezone.utc
_GREGORIAN_OFFSET = 0x01B21DD213814000  # 100 ns intervals from 1582-10-15 to 1970-01-01
HISTORY_DAYS = 45
TODAY = dt.datetime.now(UTC).date()


def timeuuid_at(when: dt.datetime, rng: random.Random) -> uuid.UUID:
    """A version 1 UUID whose timestamp is ``when`` (random clock sequence and node)."""
    ticks = int(when.timestamp() * 10_000_000) + _GREGORIAN_OFFSET + rng.randrange(10_000)
    return uuid.UUID(
        fields=(
            ticks & 0xFFFFFFFF,
            (ticks >> 32) & 0xFFFF,
            ((ticks >> 48) & 0x0FFF) | 0x1000,
            0x80 | rng.randrange(64),
            rng.randrange(256),
            rng.getrandbits(48) | 0x010000000000,
        )
    )


def rows(n: int, seed: int = 12):
    """Realistic rows in the store's column order, oldest first."""
    rng = random.Random(seed)
    start = dt.datetime.combine(TODAY - dt.timedelta(days=HISTORY_DAYS - 1), dt.time(), UTC)
    span = (dt.datetime.now(UTC) - start).total_seconds()
    probs = json.dumps([0.1] * 10)
    switch = start + dt.timedelta(days=30)
    for i in range(n):
        when = start + dt.timedelta(seconds=span * i / n)
        when = when.replace(microsecond=when.microsecond // 1000 * 1000)
        rid = timeuuid_at(when, rng)
        if rng.random() < 0.15:
            model, version = "fashion", "2026.10"
        else:
            model = "digits"
            version = "2026.11" if when < switch else ("2026.12-canary" if rng.random() < 0.01 else "2026.12")
        label = rng.randrange(10)
        r = rng.random()
        confidence = (
            0.9 + 0.1 * rng.random() if r < 0.9 else (0.5 + 0.4 * rng.random() if r < 0.98 else rng.random() * 0.5)
        )
        corrected = None
        if rng.random() < 0.02:
            corrected = (label + 1 + rng.randrange(9)) % 10 if rng.random() < 0.6 else label
        yield (
            str(rid),
            when.date().isoformat(),
            timeuuid_sort_key(rid),
            when.isoformat(timespec="milliseconds"),
            model,
            version,
            label,
            str(label),
            confidence,
            probs,
            "api",
            None,
            f"uploads/{when:%Y/%m/%d}/{rid}.png",
            None,
            1.5,
            corrected,
        )


def build(path: Path, n: int) -> float:
    started = time.perf_counter()
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")  # 1 GB: the random-order primary key index stays in memory
    conn.executescript(SCHEMA)
    insert = f"INSERT INTO dr_request_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
    conn.execute("BEGIN")
    conn.executemany(insert, rows(n))
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - started


def time_ms(fn, repeats: int) -> tuple[float, float, int]:
    fn()  # warm the page cache for this query shape
    samples = []
    result = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), max(samples), result


def cases() -> list[tuple[str, RecordFilter]]:
    mid = TODAY - dt.timedelta(days=20)
    return [
        ("no filter (latest)", RecordFilter()),
        ("model=fashion", RecordFilter(model="fashion")),
        ("model=digits", RecordFilter(model="digits")),
        ("version=2026.12-canary", RecordFilter(version="2026.12-canary")),
        ("version=2026.11 (older version)", RecordFilter(version="2026.11")),
        ("label=3", RecordFilter(label=3)),
        ("corrected", RecordFilter(corrected=True)),
        ("confidence<0.9", RecordFilter(confidence_below=0.9)),
        ("confidence<0.5", RecordFilter(confidence_below=0.5)),
        ("confidence<0.05", RecordFilter(confidence_below=0.05)),
        (f"day={mid}", RecordFilter(day=mid)),
        ("model=digits version=2026.12", RecordFilter(model="digits", version="2026.12")),
        ("model=fashion label=3", RecordFilter(model="fashion", label=3)),
        ("model=digits corrected", RecordFilter(model="digits", corrected=True)),
        ("label=3 corrected", RecordFilter(label=3, corrected=True)),
        ("corrected confidence<0.5", RecordFilter(corrected=True, confidence_below=0.5)),
        ("model=fashion confidence<0.5", RecordFilter(model="fashion", confidence_below=0.5)),
        ("version=canary confidence<0.9", RecordFilter(version="2026.12-canary", confidence_below=0.9)),
        (f"day={mid} corrected", RecordFilter(day=mid, corrected=True)),
        (f"day={mid} model=fashion label=3", RecordFilter(day=mid, model="fashion", label=3)),
        (f"day={mid} confidence<0.5", RecordFilter(day=mid, confidence_below=0.5)),
        (
            "all six",
            RecordFilter(model="digits", version="2026.12", label=3, corrected=True, confidence_below=0.95, day=TODAY),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path("/tmp/digitrec-bench-filters.sqlite3"))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="reuse the file when it exists")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    report: dict = {"records": args.records, "limit": args.limit, "repeats": args.repeats}
    if not (args.keep and args.db.exists()):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.db}{suffix}").unlink(missing_ok=True)
        report["build_s"] = round(build(args.db, args.records), 1)
        print(f"built {args.records:,} records in {report['build_s']} s: {args.db}", file=sys.stderr)
    t0 = time.perf_counter()
    store = SQLiteStore(args.db)
    report["open_and_migrate_s"] = round(time.perf_counter() - t0, 2)
    report["file_mb"] = round(args.db.stat().st_size / 1e6, 1)
    try:
        report["count"] = store.count()
        results = []
        for name, where in cases():

            def first(where=where) -> int:
                return len(store.find(where, args.limit).records)

            def third(where=where) -> int:
                page = store.find(where, args.limit)
                for _ in range(2):
                    if page.next_cursor is None:
                        return 0
                    page = store.find(where, args.limit, page.next_cursor)
                return len(page.records)

            p50, worst, got = time_ms(first, args.repeats)
            p50_3, worst_3, _ = time_ms(third, args.repeats)
            results.append(
                {
                    "filter": name,
                    "rows": got,
                    "first_p50_ms": round(p50, 2),
                    "first_max_ms": round(worst, 2),
                    "pages_1_to_3_p50_ms": round(p50_3, 2),
                    "pages_1_to_3_max_ms": round(worst_3, 2),
                }
            )
        report["filters"] = results
        stats_rows = []
        for days in (1, 7, 30):
            window = StatsWindow.last_days("digits", days)
            p50, worst, counted = time_ms(
                lambda window=window: store.summarize(window).total.count, max(3, args.repeats // 3)
            )
            stats_rows.append({"days": days, "records": counted, "p50_ms": round(p50, 1), "max_ms": round(worst, 1)})
        report["stats"] = stats_rows
    finally:
        store.close()

    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['count']:,} records, {report['file_mb']} MB; open + index migration {report['open_and_migrate_s']} s"
    )
    print(f"{'filter':42} {'rows':>5} {'page 1 p50':>11} {'max':>8} {'pages 1-3 p50':>14} {'max':>8}")
    for r in report["filters"]:
        print(
            f"{r['filter']:42} {r['rows']:5d} {r['first_p50_ms']:9.2f}ms {r['first_max_ms']:6.2f}ms"
            f" {r['pages_1_to_3_p50_ms']:12.2f}ms {r['pages_1_to_3_max_ms']:6.2f}ms"
        )
    for s in report["stats"]:
        print(
            f"stats(digits, last {s['days']:2d} days): {s['records']:7,} records"
            f"  p50 {s['p50_ms']} ms  max {s['max_ms']} ms"
        )


if __name__ == "__main__":
    main()
