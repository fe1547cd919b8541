"""Several processes opening one new records file at the same moment, as gunicorn workers do at start."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from digitrec.records.sqlite_store import SQLiteStore

PROCESSES = 6
ROUNDS = 4


def _open(path: str, barrier, results) -> None:
    barrier.wait()  # every process reaches SQLite's schema setup together
    try:
        store = SQLiteStore(path)
        store.close()
        results.put("ok")
    except Exception as exc:  # reported to the test, which names it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_file_together_all_get_a_store(tmp_path: Path) -> None:
    context = mp.get_context("spawn")  # fresh interpreters, as gunicorn's workers have their own imports
    for round_ in range(ROUNDS):
        path = tmp_path / f"round{round_}" / "records.sqlite3"
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        processes = [context.Process(target=_open, args=(str(path), barrier, results)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        assert outcomes == ["ok"] * PROCESSES, outcomes
        store = SQLiteStore(path)
        try:
            assert store.count() == 0 and store.health().ok
        finally:
            store.close()
