"""WAL checkpoints run in the store's background thread, never inside a committing write."""

from __future__ import annotations

import os
import time

from digitrec.records.sqlite_store import SQLiteStore
from tests.records_helpers import image_bytes, make_record, with_image

IMAGE = image_bytes(2700)  # incompressible, the size of a request's PNG: a record + image is ~13 WAL pages


def add_records(store: SQLiteStore, n: int) -> None:
    for i in range(n):
        store.add(with_image(make_record(i), IMAGE), IMAGE)


def test_commits_leave_the_database_file_alone_when_the_checkpointer_is_stopped(tmp_path):
    path = tmp_path / "records.sqlite3"
    store = SQLiteStore(path)
    try:
        store._checkpointer.close()  # nothing checkpoints now, unless a commit does it itself
        size = path.stat().st_size
        add_records(store, 300)  # ~4,000 WAL pages: SQLite's default would checkpoint 3-4 times in COMMIT
        assert path.stat().st_size == size
        assert os.path.getsize(f"{path}-wal") > 4 * 1000 * 1024
        assert store.count() == 300
    finally:
        store.close()


def test_the_background_thread_checkpoints_and_the_log_stays_short(tmp_path):
    path = tmp_path / "records.sqlite3"
    store = SQLiteStore(path)
    try:
        size = path.stat().st_size
        add_records(store, 2000)  # ~26,000 pages written through the log (~100 MB of log without restarts)
        deadline = time.monotonic() + 10
        while store._checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store._checkpointer.checkpoints > 0
        assert path.stat().st_size > size + 2000 * 2700
        assert os.path.getsize(f"{path}-wal") < 80 * 1024 * 1024  # restarted at 64 MB
    finally:
        store.close()
    reopened = SQLiteStore(path)
    try:
        assert reopened.count() == 2000
    finally:
        reopened.close()


def test_inline_checkpoints_remain_available(tmp_path):
    path = tmp_path / "records.sqlite3"
    store = SQLiteStore(path, background_checkpoints=False)
    try:
        size = path.stat().st_size
        add_records(store, 300)
        assert path.stat().st_size > size  # SQLite's own checkpoint ran in a COMMIT
    finally:
        store.close()
