"""WAL checkpoints in a background thread, so no committing request waits for one.

By default SQLite checkpoints inside the ``COMMIT`` that brings the write-ahead log past 1,000 pages:
that commit copies the log into the database file and syncs both, 5-10 ms of disk wait for one
request in about forty (a record with its image and indexes is about 13 pages). The store's write
connection has ``wal_autocheckpoint`` off instead, and this thread, on a connection of its own, runs a
``PASSIVE`` checkpoint once the writers have committed ``every`` transactions, or after ``interval``
seconds with any commit. A passive checkpoint never waits for a lock and never blocks a writer (they
keep appending to the log meanwhile); the writer that follows a complete checkpoint starts the log
from its beginning again.

Under writes without a pause a passive checkpoint never completes (commits land while it syncs), and
the log would grow without end. Once it is over ``restart_bytes`` the thread runs a ``RESTART``
checkpoint instead, which holds new writers back while it copies the few frames the passive ones left
and syncs: one short stall in about a thousand requests of continuous load, and a bounded log
(truncated to ``JOURNAL_SIZE_LIMIT`` once it restarts).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

COMMITS_PER_CHECKPOINT = 64  # about 800 log pages of records with images: below SQLite's own 1,000
CHECKPOINT_INTERVAL = 1.0  # seconds: a trickle of commits is checkpointed at least this often
RESTART_BYTES = 64 * 1024 * 1024  # log size at which a checkpoint holds writers back until it completes
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024  # what a restarted log is truncated to (PRAGMA journal_size_limit)


class WalCheckpointer:
    """A daemon thread that checkpoints one SQLite file's WAL when told enough commits happened."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        wal_path: str,
        name: str,
        every: int = COMMITS_PER_CHECKPOINT,
        interval: float = CHECKPOINT_INTERVAL,
        restart_bytes: int = RESTART_BYTES,
    ) -> None:
        self._connect = connect
        self._wal_path = wal_path
        self._restart_bytes = restart_bytes
        self._every = every
        self._interval = interval
        self._commits = 0  # since the last checkpoint; written by committers, read by the thread
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.checkpoints = 0  # completed checkpoint runs (for tests and diagnostics)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Called by the writer after each commit: cheap (no lock; a lost increment only delays)."""
        self._commits += 1
        if self._commits >= self._every:
            self._wake.set()

    def _run(self) -> None:
        conn = None
        try:
            conn = self._connect()
            while not self._stop.is_set():
                self._wake.wait(self._interval)
                self._wake.clear()
                if self._commits:
                    self._commits = 0
                    self._checkpoint(conn, "PASSIVE")
                    if self._wal_size() > self._restart_bytes:
                        self._checkpoint(conn, "RESTART")
            if self._commits:
                self._checkpoint(conn, "PASSIVE")
        except sqlite3.Error as exc:  # the file went away or cannot be opened: SQLite's own checkpoint at close
            log.warning("WAL checkpointer stopped: %s", exc)
        finally:
            if conn is not None:
                conn.close()

    def _wal_size(self) -> int:
        try:
            return os.path.getsize(self._wal_path)
        except OSError:
            return 0

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
            self.checkpoints += 1
        except sqlite3.OperationalError as exc:  # busy or locked: the next round tries again
            log.debug("WAL checkpoint skipped: %s", exc)

    def close(self, timeout: float = 10.0) -> None:
        """Run a last checkpoint and stop the thread. Safe to call twice."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
