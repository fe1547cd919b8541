"""Group commit without a writer thread: many callers' writes to one SQLite file in one transaction.

A caller queues its job; if no commit is running, that caller leads: it takes the queued jobs (its own
and those of callers that arrived meanwhile), runs them in one transaction, commits, and hands each
caller its result; then it leads again while jobs are waiting. A caller that finds a commit running
just waits for the leader of the next one. Every ``add()`` is still durable when it returns, and
eight concurrent callers still cost about one commit instead of eight.

A lone caller commits its own write in its own thread: no hand-off to a writer thread and back, which
cost two thread wake-ups per request (and, on a busy host, waits for the GIL) in the earlier design
with a dedicated writer thread. SQLite allows one writer at a time anyway; within a process only the
leader writes, so "database is locked" waits happen only between processes (gunicorn workers), where
the busy timeout covers them.

Jobs must return plain values, never a cursor: a cursor kept after the leader moved on could reset a
statement the next leader is using.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from digitrec.records.exceptions import StoreClosedError

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], object]


class GroupCommitWriter:
    """Runs write jobs on one connection, committing together the jobs that queued up meanwhile."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        name: str,
        max_batch: int = 1000,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._max_batch = max_batch
        self._on_commit = on_commit  # called after every successful commit, in the committing thread
        self._conn = connect()  # a failure to open the database raises here, in the caller
        self._pending: deque[tuple[Callable[[sqlite3.Connection], object], Future]] = deque()
        self._pending_lock = threading.Lock()
        self._leading = threading.Lock()  # held by the caller running a commit
        self._closed = False

    def submit(self, job: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue ``job``; commits it in this thread unless another caller is committing."""
        future: Future[T] = Future()
        with self._pending_lock:
            if self._closed:
                raise StoreClosedError("the records store is closed")
            self._pending.append((job, future))
        self._lead()
        return future

    def run(self, job: Callable[[sqlite3.Connection], T], timeout: float | None) -> T:
        """Submit and wait for the commit; ``TimeoutError`` if the batch is not committed in time."""
        return self.submit(job).result(timeout)

    def close(self) -> None:
        """Refuse new jobs, commit the queued ones, close the connection. Safe to call twice."""
        with self._pending_lock:
            if self._closed:
                return
            self._closed = True
        with self._leading:  # waits for a running commit
            while self._pending:
                self._commit_waiting()
            self._conn.close()

    def _lead(self) -> None:
        """Commit while jobs wait and nobody else commits; return as soon as another caller leads."""
        while True:
            if not self._leading.acquire(blocking=False):
                return  # the running leader takes our job once its commit is done
            try:
                self._commit_waiting()
            finally:
                self._leading.release()
            with self._pending_lock:
                if not self._pending:
                    return

    def _commit_waiting(self) -> None:
        with self._pending_lock:
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), self._max_batch))]
        if batch:
            self._commit(self._conn, batch)

    def _commit(self, conn: sqlite3.Connection, batch: list) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [job(conn) for job, _ in batch]
            conn.execute("COMMIT")
            if self._on_commit is not None:
                self._on_commit()
        except Exception as exc:  # noqa: BLE001 - reported to the waiting callers
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if len(batch) > 1:
                # One bad job must not fail its neighbours: retry each on its own.
                for item in batch:
                    self._commit(conn, [item])
            else:
                log.debug("write failed: %s", exc)
                batch[0][1].set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)
