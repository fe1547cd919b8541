"""The durable spool: when the primary store fails, records wait in ``<data dir>/spool.sqlite3``.

Each process has its own spool file (``spool.worker-<pid>.sqlite3`` for gunicorn workers) and adopts the
spools of processes that died (``spool_files``), at start and every ``ADOPT_INTERVAL`` seconds.

``SpooledStore.add`` returns only after the record is committed to the primary or to the spool, so a
record the caller was told is saved survives the primary being down and this process being killed.
A background thread replays the spool oldest first with exponential backoff; replays are idempotent
(same request id = same row), and leftovers from a previous run are replayed at start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from digitrec.records import spool_files, sqlite_store
from digitrec.records.codec import check_storable, record_from_json, record_to_json
from digitrec.records.exceptions import StoreClosedError
from digitrec.records.group_commit import GroupCommitWriter
from digitrec.records.query import RecordFilter, StatsWindow
from digitrec.records.record import PredictionRecord
from digitrec.records.stats import RecordStats
from digitrec.records.store import Health, Page, RecordStore, check_images

log = logging.getLogger(__name__)

ADOPT_INTERVAL = 30.0  # seconds between looks for spools left by processes that died

SPOOL_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    request_id TEXT PRIMARY KEY,
    payload    TEXT NOT NULL,              -- the record as JSON
    revision   INTEGER NOT NULL DEFAULT 0, -- bumped by corrections, so a replay never drops a newer payload
    spooled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    request_id  TEXT PRIMARY KEY,
    payload     TEXT NOT NULL,
    error       TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
-- The image of a spooled record, committed with it; own tables, so spool files from before images
-- travelled with their record keep working.
CREATE TABLE IF NOT EXISTS spool_image (
    request_id TEXT PRIMARY KEY,
    data       BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected_image (
    request_id TEXT PRIMARY KEY,
    data       BLOB NOT NULL
);
"""
REPLAY_BATCH_BYTES = 32 * 1024 * 1024  # images read into memory per replay batch (at least one record)


@dataclasses.dataclass(frozen=True)
class SpooledRecord:
    request_id: str
    revision: int
    record: PredictionRecord
    image: bytes | None = None


class Spool:
    """A durable FIFO of records keyed by request id (writes group-committed like the SQLite store)."""

    def __init__(self, path: Path | str, synchronous: str = "NORMAL", write_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._write_timeout = write_timeout
        self._writer = GroupCommitWriter(self._open, name=f"spool-writer:{self.path.name}")
        self._read_lock = threading.Lock()
        self._reader = sqlite_store.connect(self.path, synchronous)
        self._depth_lock = threading.Lock()
        self._depth = self._reader.execute("SELECT COUNT(*) FROM spool").fetchone()[0]

    def _open(self) -> sqlite3.Connection:
        conn = sqlite_store.connect(self.path, self._synchronous)
        conn.executescript(SPOOL_SCHEMA)
        return conn

    @property
    def depth(self) -> int:
        return self._depth

    def _adjust(self, delta: int) -> None:
        with self._depth_lock:
            self._depth += delta

    def put_many(self, records: list[PredictionRecord], images: Mapping[uuid.UUID, bytes] | None = None) -> None:
        """Commit the records (and their images) to the spool file; returns only once they are durable."""
        rows = [(str(r.request_id), record_to_json(r), time.time()) for r in records]
        image_rows = [(str(rid), data) for rid, data in (images or {}).items()]

        def job(conn: sqlite3.Connection) -> int:
            added = 0
            for request_id, payload, when in rows:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO spool (request_id, payload, spooled_at) VALUES (?, ?, ?)",
                    (request_id, payload, when),
                )
                if cur.rowcount:
                    added += 1
                else:
                    conn.execute(
                        "UPDATE spool SET payload = ?, revision = revision + 1 WHERE request_id = ?",
                        (payload, request_id),
                    )
            conn.executemany("INSERT OR REPLACE INTO spool_image (request_id, data) VALUES (?, ?)", image_rows)
            return added

        self._adjust(self._writer.run(job, self._write_timeout))

    def oldest(self, limit: int, max_bytes: int = REPLAY_BATCH_BYTES) -> list[SpooledRecord]:
        """The oldest records with their images, stopping early once ``max_bytes`` of images are read."""
        found: list[SpooledRecord] = []
        size = 0
        with self._read_lock:
            cursor = self._reader.execute(
                "SELECT s.request_id, s.revision, s.payload, i.data FROM spool AS s "
                "LEFT JOIN spool_image AS i ON i.request_id = s.request_id ORDER BY s.rowid LIMIT ?",
                (limit,),
            )
            try:
                for rid, rev, payload, image in cursor:
                    found.append(
                        SpooledRecord(rid, rev, record_from_json(payload), None if image is None else bytes(image))
                    )
                    size += len(image or b"")
                    if size >= max_bytes:
                        break
            finally:
                cursor.close()
        return found

    def get(self, request_id: uuid.UUID) -> PredictionRecord | None:
        with self._read_lock:
            row = self._reader.execute("SELECT payload FROM spool WHERE request_id = ?", (str(request_id),)).fetchone()
        return None if row is None else record_from_json(row[0])

    def get_image(self, request_id: uuid.UUID) -> bytes | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT data FROM spool_image WHERE request_id = ?", (str(request_id),)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def remove(self, items: list[SpooledRecord]) -> None:
        """Delete replayed rows, unless a correction changed them since they were read."""
        params = [(item.request_id, item.revision) for item in items]

        def job(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany("DELETE FROM spool WHERE request_id = ? AND revision = ?", params)
            removed = conn.total_changes - before
            # An image never changes, so it goes with the last spooled version of its record.
            conn.executemany(
                "DELETE FROM spool_image WHERE request_id = ?1 AND NOT EXISTS "
                "(SELECT 1 FROM spool WHERE request_id = ?1)",
                [(item.request_id,) for item in items],
            )
            return removed

        self._adjust(-self._writer.run(job, self._write_timeout))

    def reject(self, item: SpooledRecord, error: str) -> None:
        """Move a record the primary refuses as invalid aside, so it cannot block the queue forever."""

        def job(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT OR REPLACE INTO rejected SELECT request_id, payload, ?, ? FROM spool WHERE request_id = ?",
                (error, time.time(), item.request_id),
            )
            conn.execute(
                "INSERT OR REPLACE INTO rejected_image SELECT request_id, data FROM spool_image WHERE request_id = ?",
                (item.request_id,),
            )
            conn.execute("DELETE FROM spool_image WHERE request_id = ?", (item.request_id,))
            return conn.execute("DELETE FROM spool WHERE request_id = ?", (item.request_id,)).rowcount

        self._adjust(-self._writer.run(job, self._write_timeout))

    def put_rejected(self, rows: list[tuple]) -> None:
        """Keep rejected rows of an adopted spool: (request_id, payload, error, rejected_at, image or None)."""

        def job(conn: sqlite3.Connection) -> int:
            conn.executemany("INSERT OR REPLACE INTO rejected VALUES (?, ?, ?, ?)", [row[:4] for row in rows])
            conn.executemany(
                "INSERT OR REPLACE INTO rejected_image (request_id, data) VALUES (?, ?)",
                [(row[0], row[4]) for row in rows if row[4] is not None],
            )
            return len(rows)

        self._writer.run(job, self._write_timeout)

    def set_correction(
        self, request_id: uuid.UUID, corrected_label: int | str | None, by: str | None = None, client: str | None = None
    ) -> bool:
        record = self.get(request_id)
        if record is None:
            return False
        return self._update(record.with_correction(corrected_label, by, client))

    def reject_correction(self, request_id: uuid.UUID, rejected: bool = True) -> bool:
        record = self.get(request_id)
        if record is None or record.correction is None:
            return False
        return self._update(dataclasses.replace(record, correction_rejected=rejected))

    def _update(self, record: PredictionRecord) -> bool:
        payload = record_to_json(record)
        request_id = record.request_id
        return self._writer.run(
            lambda conn: (
                conn.execute(
                    "UPDATE spool SET payload = ?, revision = revision + 1 WHERE request_id = ?",
                    (payload, str(request_id)),
                ).rowcount
                > 0
            ),
            self._write_timeout,
        )

    def delete(self, request_id: uuid.UUID) -> bool:
        """Remove every copy of the record here (waiting or rejected, with its image), then scrub the log."""
        removed = self._writer.run(lambda conn: delete_spooled(conn, [str(request_id)]), self._write_timeout)
        if removed:
            self._adjust(-self._waiting_removed(removed))
            sqlite_store.scrub_log(self.path, self._synchronous)
        return bool(removed)

    def purge_before(self, day: dt.date) -> int:
        """Remove the records of days before ``day`` (they wait here only while the primary was down)."""

        def job(conn: sqlite3.Connection) -> tuple[int, int]:
            ids = [
                row[0]
                for table in ("spool", "rejected")
                for row in conn.execute(
                    f"SELECT request_id FROM {table} WHERE json_extract(payload, '$.request_time') < ?",
                    (day.isoformat(),),
                )
            ]
            waiting = conn.execute(
                "SELECT COUNT(*) FROM spool WHERE json_extract(payload, '$.request_time') < ?", (day.isoformat(),)
            ).fetchone()[0]
            return (delete_spooled(conn, ids) if ids else 0), waiting

        removed, waiting = self._writer.run(job, self._write_timeout)
        if removed:
            self._adjust(-waiting)
            sqlite_store.scrub_log(self.path, self._synchronous)
        return removed

    def _waiting_removed(self, removed: int) -> int:
        """How many of the removed rows were waiting (the depth counts those only): recounted."""
        with self._read_lock:
            now = self._reader.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
        return self._depth - now

    def close(self) -> None:
        self._writer.close()
        with self._read_lock:
            self._reader.close()


SPOOL_TABLES = ("spool", "spool_image", "rejected", "rejected_image")


def delete_spooled(conn: sqlite3.Connection, request_ids: list[str]) -> int:
    """Delete the rows of these records from every spool table; returns how many rows went."""
    before = conn.total_changes
    for table in SPOOL_TABLES:
        conn.executemany(f"DELETE FROM {table} WHERE request_id = ?", [(rid,) for rid in request_ids])
    return conn.total_changes - before


def spool_depth_at(path: Path | str) -> int:
    """Records waiting in a spool file, read without starting a replayer (for the CLI)."""
    path = Path(path)
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


class SpooledStore(RecordStore):
    """Wraps a primary store: writes fall back to the spool, and a thread replays the spool into it."""

    def __init__(
        self,
        primary: RecordStore,
        spool_path: Path | str,
        *,
        synchronous: str = "NORMAL",
        retry_min: float = 0.5,
        retry_max: float = 30.0,
        batch_size: int = 500,
        write_timeout: float = 10.0,
    ) -> None:
        self.primary = primary
        self.engine = primary.engine
        path, self._lock = spool_files.claim(Path(spool_path))
        try:
            self.spool = Spool(path, synchronous, write_timeout)
        except BaseException:
            self._lock.release()
            raise
        self._retry_min, self._retry_max = retry_min, retry_max
        self._batch_size = batch_size
        self._primary_down = False  # while True, writes go straight to the spool (no timeout per request)
        self._last_error = ""
        self.spooled_total = 0
        self.replayed_total = 0
        self.rejected_total = 0
        self.adopted_total = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._replay_loop, name="records-spool-replay", daemon=True)
        self._thread.start()
        if self.spool.depth:
            log.warning("replaying %d record(s) left in %s", self.spool.depth, self.spool.path)
            self._wake.set()

    @property
    def spool_depth(self) -> int:
        return self.spool.depth

    @property
    def primary_down(self) -> bool:
        return self._primary_down

    # ------------------------------------------------------------------ writes
    def add(self, record: PredictionRecord, image: bytes | None = None) -> None:
        self.add_many([record], None if image is None else {record.request_id: image})

    def add_many(self, records: Iterable[PredictionRecord], images: Mapping[uuid.UUID, bytes] | None = None) -> None:
        if self._closed:
            raise StoreClosedError("the records store is closed")
        records = list(records)
        for record in records:
            check_storable(record)  # invalid input is the caller's error, never spooled
        clean = check_images(records, images or {})
        if not records:
            return
        if not self._primary_down:
            try:
                self.primary.add_checked(records, clean)
                return
            except (ValueError, TypeError):
                raise
            except Exception as exc:  # noqa: BLE001 - any primary failure is what the spool is for
                self._mark_down(exc)
        self.spool.put_many(records, clean)
        self.spooled_total += len(records)
        self._wake.set()

    def _mark_down(self, exc: BaseException) -> None:
        if not self._primary_down:
            log.warning(
                "primary %s store failed (%s: %s); spooling records to %s",
                self.primary.engine,
                type(exc).__name__,
                exc,
                self.spool.path,
            )
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._primary_down = True

    # ------------------------------------------------------------------ replay
    def adopt_orphans(self) -> int:
        """Move records of spools whose process died into this spool (replayed from here)."""
        try:
            moved = spool_files.adopt_orphans(self.spool.path, self.spool.put_many, self.spool.put_rejected)
        except Exception:  # noqa: BLE001 - retried at the next interval; this spool keeps working
            log.exception("adopting orphaned spools next to %s failed", self.spool.path)
            return 0
        self.adopted_total += moved
        return moved

    def _replay_loop(self) -> None:
        delay = self._retry_min
        next_adoption = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_adoption:
                self.adopt_orphans()
                next_adoption = time.monotonic() + ADOPT_INTERVAL
            if self.spool.depth == 0:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                replayed = self._replay_batch()
            except Exception as exc:  # noqa: BLE001 - primary still down: back off and retry
                self._mark_down(exc)
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._retry_max)
                continue
            if replayed and self._primary_down:
                log.info("primary %s store is back; replaying the spool", self.primary.engine)
            self._primary_down = False
            delay = self._retry_min

    def _replay_batch(self) -> int:
        batch = self.spool.oldest(self._batch_size)
        if not batch:
            return 0
        try:
            images = {item.record.request_id: item.image for item in batch if item.image is not None}
            self.primary.add_many([item.record for item in batch], images)
            good = batch
        except (ValueError, TypeError):
            good = []
            for item in batch:  # find the record(s) the primary refuses; replay the rest
                try:
                    self.primary.add(item.record, item.image)
                    good.append(item)
                except (ValueError, TypeError) as exc:
                    log.error("record %s rejected by the primary store: %s", item.request_id, exc)
                    self.spool.reject(item, f"{type(exc).__name__}: {exc}")
                    self.rejected_total += 1
        self.spool.remove(good)
        self.replayed_total += len(good)
        return len(good)

    def wait_drained(self, timeout: float) -> bool:
        """Wait (bounded) until the spool is empty; True if it is."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self.spool.depth and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.spool.depth == 0

    # ------------------------------------------------------------------ reads
    def _read(self, method: str, request_id: uuid.UUID) -> Any:
        """The primary's answer, else the spool's (a record not replayed yet); the primary's error only
        when the spool does not have it either."""
        try:
            found = getattr(self.primary, method)(request_id)
        except Exception:
            found = getattr(self.spool, method)(request_id)
            if found is None:
                raise
            return found
        return found if found is not None else getattr(self.spool, method)(request_id)

    def get(self, request_id: uuid.UUID) -> PredictionRecord | None:
        return self._read("get", request_id)

    def get_image(self, request_id: uuid.UUID) -> bytes | None:
        return self._read("get_image", request_id)

    def add_image(self, record: PredictionRecord, image: bytes) -> bool:
        return self.primary.add_image(record, image)

    def latest(self, limit: int = 20, cursor: str | None = None) -> Page:
        return self.primary.latest(limit, cursor)

    def by_day(self, day: dt.date) -> list[PredictionRecord]:
        return self.primary.by_day(day)

    def find(self, where: RecordFilter, limit: int = 20, cursor: str | None = None) -> Page:
        return self.primary.find(where, limit, cursor)

    def summarize(self, window: StatsWindow) -> RecordStats:
        return self.primary.summarize(window)

    def set_correction(
        self, request_id: uuid.UUID, corrected_label: int | str | None, by: str | None = None, client: str | None = None
    ) -> bool:
        return self._change("set_correction", request_id, corrected_label, by, client)

    def reject_correction(self, request_id: uuid.UUID, rejected: bool = True) -> bool:
        return self._change("reject_correction", request_id, rejected)

    def _change(self, method: str, request_id: uuid.UUID, *args: Any) -> bool:
        """Change the record in the primary; in the spool when the primary does not have it (yet) or fails."""
        try:
            if getattr(self.primary, method)(request_id, *args):
                return True
        except (ValueError, TypeError):
            raise
        except Exception:
            if getattr(self.spool, method)(request_id, *args):
                return True
            raise
        return getattr(self.spool, method)(request_id, *args)

    def delete(self, request_id: uuid.UUID) -> bool:
        """Gone from the primary and from this process's spool (other spools: ``deletion``)."""
        in_spool = self.spool.delete(request_id)
        return self.primary.delete(request_id) or in_spool

    def purge_before(self, day: dt.date, limit: int = 500) -> list[PredictionRecord]:
        """The primary's oldest batch; once it has none left, this process's spool is purged too."""
        found = self.primary.purge_before(day, limit)
        if not found:
            self.spool.purge_before(day)
        return found

    def scrub(self) -> bool:
        return self.primary.scrub()

    def health(self) -> Health:
        primary = self.primary.health()
        detail = primary.detail
        if self._primary_down:
            detail = f"{detail}; writes are being spooled ({self._last_error})"
        return Health(primary.ok, primary.engine, detail, self.spool.depth)

    def stats(self) -> dict[str, int | bool]:
        """Counters for metrics: spool depth and records spooled / replayed / rejected since start."""
        return {
            "spool_depth": self.spool.depth,
            "spooled_total": self.spooled_total,
            "replayed_total": self.replayed_total,
            "rejected_total": self.rejected_total,
            "adopted_total": self.adopted_total,
            "primary_down": self._primary_down,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self.spool.close()
        self._lock.release()
        self.primary.close()
