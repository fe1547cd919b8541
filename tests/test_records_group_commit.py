"""Group commit without a writer thread, on a real SQLite file: a lone write commits in the caller's
thread, concurrent writes share commits, and nothing queued is lost at close."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from records_helpers import run_writers

from digitrec.records import sqlite_store
from digitrec.records.exceptions import StoreClosedError
from digitrec.records.group_commit import GroupCommitWriter


def writer_on(path, statements: list[str]) -> GroupCommitWriter:
    def connect() -> sqlite3.Connection:
        conn = sqlite_store.connect(path)
        conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, thread INTEGER)")
        conn.set_trace_callback(statements.append)  # every statement SQLite runs, BEGIN and COMMIT too
        return conn

    return GroupCommitWriter(connect, name="test")


def rows(path) -> list[tuple[int, int]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute("SELECT n, thread FROM t ORDER BY n"))
    finally:
        conn.close()


def test_a_lone_write_is_committed_in_the_callers_thread(tmp_path):
    statements: list[str] = []
    writer = writer_on(tmp_path / "db.sqlite3", statements)
    try:
        me = threading.get_ident()
        writer.run(lambda conn: conn.execute("INSERT INTO t VALUES (1, ?)", (threading.get_ident(),)).rowcount, 5)
    finally:
        writer.close()
    assert rows(tmp_path / "db.sqlite3") == [(1, me)]
    assert statements.count("COMMIT") == 1


def test_concurrent_writes_share_commits_and_all_land(tmp_path):
    statements: list[str] = []
    writer = writer_on(tmp_path / "db.sqlite3", statements)

    def write(n: int) -> None:
        for i in range(200):
            key = n * 1000 + i
            writer.run(lambda conn, key=key: conn.execute("INSERT INTO t VALUES (?, 0)", (key,)).rowcount, 30)

    try:
        run_writers(write, threads=8)
    finally:
        writer.close()
    assert len(rows(tmp_path / "db.sqlite3")) == 1600
    commits = statements.count("COMMIT")
    assert 0 < commits < 1600, f"{commits} commits for 1600 writes: no write shared a commit"


def test_a_failing_job_fails_alone_and_close_refuses_new_work(tmp_path):
    statements: list[str] = []
    writer = writer_on(tmp_path / "db.sqlite3", statements)
    writer.run(lambda conn: conn.execute("INSERT INTO t VALUES (1, 0)").rowcount, 5)
    with pytest.raises(sqlite3.IntegrityError):
        writer.run(lambda conn: conn.execute("INSERT INTO t VALUES (1, 0)").rowcount, 5)
    writer.run(lambda conn: conn.execute("INSERT INTO t VALUES (2, 0)").rowcount, 5)
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(StoreClosedError):
        writer.run(lambda conn: 0, 5)
    assert [n for n, _ in rows(tmp_path / "db.sqlite3")] == [1, 2]
