"""One writer thread per SQLite file that commits many callers' writes in one transaction.

Each caller enqueues a job and waits for the commit of the batch holding it, so every ``add()`` is
durable when it returns, yet eight threads cost one commit instead of eight. SQLite allows one writer
at a time anyway; funnelling writes through one thread also removes "database is locked" retries.

Jobs must return plain values, never a cursor: a cursor freed in the caller's thread would reset a
statement the writer thread is using.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from digitrec.records.exceptions import StoreClosedError

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], object]
_STOP = object()


class GroupCommitWriter:
    """Runs write jobs on a dedicated connection, committing each drained batch together."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str, max_batch: int = 1000) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._max_batch = max_batch
        self._closed = False
        self._close_lock = threading.Lock()
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(connect, ready), name=name, daemon=True)
        self._thread.start()
        ready.result()  # re-raises a failure to open the database in the caller

    def submit(self, job: Callable[[sqlite3.Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._close_lock:
            if self._closed:
                raise StoreClosedError("the records store is closed")
            self._queue.put((job, future))
        return future

    def run(self, job: Callable[[sqlite3.Connection], T], timeout: float | None) -> T:
        """Submit and wait for the commit; ``TimeoutError`` if the batch is not committed in time."""
        return self.submit(job).result(timeout)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _run(self, connect: Callable[[], sqlite3.Connection], ready: Future) -> None:
        try:
            conn = connect()
        except BaseException as exc:  # noqa: BLE001 - handed to the constructor's caller
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                item = self._queue.get()
                if item is _STOP:
                    break
                batch = [item]
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._commit(conn, batch)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [job(conn) for job, _ in batch]
            conn.execute("COMMIT")
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
