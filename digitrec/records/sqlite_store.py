"""The default store: an embedded SQLite file (WAL) on the data volume, so no database server is needed."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from digitrec.records.codec import as_utc, check_storable, decode_cursor, encode_cursor, timeuuid_sort_key
from digitrec.records.exceptions import StoreClosedError
from digitrec.records.group_commit import GroupCommitWriter
from digitrec.records.record import RECORD_FIELDS, PredictionRecord
from digitrec.records.store import Health, Page, RecordStore, check_image, check_images

SCHEMA = """
CREATE TABLE IF NOT EXISTS dr_request_log (
    request_id      TEXT PRIMARY KEY,        -- canonical UUID text (version 1)
    day             TEXT NOT NULL,           -- UTC day of request_time, YYYY-MM-DD
    sort_key        BLOB NOT NULL,           -- timeuuid order, same as Cassandra's clustering order
    request_time    TEXT NOT NULL,           -- ISO 8601 UTC, milliseconds
    model_name      TEXT NOT NULL,
    model_version   TEXT NOT NULL,
    label           INTEGER NOT NULL,
    class_name      TEXT NOT NULL,
    confidence      REAL NOT NULL,
    probabilities   TEXT NOT NULL,           -- JSON array of 10 numbers
    source          TEXT NOT NULL,
    file_name       TEXT,
    image_path      TEXT,
    image_sha256    TEXT,
    processing_ms   REAL NOT NULL,
    corrected_label INTEGER
);
CREATE INDEX IF NOT EXISTS dr_request_log_newest ON dr_request_log (day DESC, sort_key DESC);
CREATE TABLE IF NOT EXISTS dr_request_image (
    request_id      TEXT PRIMARY KEY,        -- the record's request id
    size            INTEGER NOT NULL,        -- bytes
    data            BLOB NOT NULL            -- the image as stored (PNG); one cell, SQLite has no cell limit to respect
);
"""

_COLUMNS = ("request_id", "day", "sort_key", *RECORD_FIELDS[1:])
# Replays of the same request id overwrite the record but keep a correction made in between.
_UPSERT = (
    f"INSERT INTO dr_request_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT(request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:-1])
    + ", corrected_label = COALESCE(excluded.corrected_label, dr_request_log.corrected_label)"
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM dr_request_log"
# An image never changes for a request id, so a replay may simply overwrite it.
_UPSERT_IMAGE = "INSERT OR REPLACE INTO dr_request_image (request_id, size, data) VALUES (?, ?, ?)"


def connect(path: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in autocommit mode with WAL; NORMAL survives a process crash, FULL also power loss."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _row(record: PredictionRecord) -> tuple:
    return (
        str(record.request_id),
        record.day.isoformat(),
        timeuuid_sort_key(record.request_id),
        as_utc(record.request_time).isoformat(timespec="milliseconds"),
        record.model_name,
        record.model_version,
        record.label,
        record.class_name,
        record.confidence,
        json.dumps(list(record.probabilities)),
        record.source,
        record.file_name,
        record.image_path,
        record.image_sha256,
        record.processing_ms,
        record.corrected_label,
    )


def _record(row: sqlite3.Row | tuple) -> PredictionRecord:
    (
        request_id,
        _day,
        _key,
        request_time,
        model_name,
        model_version,
        label,
        class_name,
        confidence,
        probabilities,
        source,
        file_name,
        image_path,
        image_sha256,
        processing_ms,
        corrected_label,
    ) = row
    return PredictionRecord(
        request_id=uuid.UUID(request_id),
        request_time=dt.datetime.fromisoformat(request_time),
        model_name=model_name,
        model_version=model_version,
        label=label,
        class_name=class_name,
        confidence=confidence,
        probabilities=tuple(json.loads(probabilities)),
        source=source,
        file_name=file_name,
        image_path=image_path,
        image_sha256=image_sha256,
        processing_ms=processing_ms,
        corrected_label=corrected_label,
    )


class SQLiteStore(RecordStore):
    """Records in ``<data dir>/records.sqlite3``; writes group-committed by one writer thread."""

    engine = "sqlite"

    def __init__(self, path: Path | str, synchronous: str = "NORMAL", write_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._write_timeout = write_timeout
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._writer = GroupCommitWriter(self._open_writer, name=f"sqlite-writer:{self.path.name}")

    def _open_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, self._synchronous)
        conn.executescript(SCHEMA)
        return conn

    def _reader(self) -> sqlite3.Connection:
        """One read connection per thread: WAL lets them read while the writer commits."""
        if self._closed:
            raise StoreClosedError("the records store is closed")
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            with self._lock:
                if self._closed:
                    raise StoreClosedError("the records store is closed")
                conn = connect(self.path, self._synchronous)
                self._reader_conns.append(conn)
            self._readers.conn = conn
        return conn

    def add(self, record: PredictionRecord, image: bytes | None = None) -> None:
        self.add_many([record], None if image is None else {record.request_id: image})

    def add_many(self, records: Iterable[PredictionRecord], images: Mapping[uuid.UUID, bytes] | None = None) -> None:
        records = list(records)
        for record in records:
            check_storable(record)
        clean = check_images(records, images or {})
        rows = [_row(r) for r in records]
        image_rows = [(str(rid), len(data), data) for rid, data in clean.items()]
        if not rows:
            return

        def job(conn: sqlite3.Connection) -> int:
            # Record and image in the one transaction of this batch: both are durable, or neither.
            changed = conn.executemany(_UPSERT, rows).rowcount
            if image_rows:
                conn.executemany(_UPSERT_IMAGE, image_rows)
            return changed

        self._writer.run(job, self._write_timeout)

    def add_image(self, record: PredictionRecord, image: bytes) -> bool:
        data = check_image(record, image)
        params = (str(record.request_id), len(data), data)
        self._writer.run(lambda conn: conn.execute(_UPSERT_IMAGE, params).rowcount, self._write_timeout)
        return True

    def get_image(self, request_id: uuid.UUID) -> bytes | None:
        row = self._reader().execute("SELECT data FROM dr_request_image WHERE request_id = ?", (str(request_id),))
        found = row.fetchone()
        return None if found is None else bytes(found[0])

    def has_image(self, request_id: uuid.UUID) -> bool:
        query = "SELECT 1 FROM dr_request_image WHERE request_id = ?"
        return self._reader().execute(query, (str(request_id),)).fetchone() is not None

    def get(self, request_id: uuid.UUID) -> PredictionRecord | None:
        row = self._reader().execute(f"{_SELECT} WHERE request_id = ?", (str(request_id),)).fetchone()
        return None if row is None else _record(row)

    def latest(self, limit: int = 20, cursor: str | None = None) -> Page:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if cursor is None:
            rows = (
                self._reader().execute(f"{_SELECT} ORDER BY day DESC, sort_key DESC LIMIT ?", (limit + 1,)).fetchall()
            )
        else:
            day, request_id = decode_cursor(cursor)
            rows = (
                self._reader()
                .execute(
                    f"{_SELECT} WHERE day < ?1 OR (day = ?1 AND sort_key < ?2) "
                    "ORDER BY day DESC, sort_key DESC LIMIT ?3",
                    (day.isoformat(), timeuuid_sort_key(request_id), limit + 1),
                )
                .fetchall()
            )
        records = [_record(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(records, encode_cursor(records[-1].day, records[-1].request_id) if more else None)

    def by_day(self, day: dt.date) -> list[PredictionRecord]:
        rows = self._reader().execute(f"{_SELECT} WHERE day = ? ORDER BY sort_key DESC", (day.isoformat(),)).fetchall()
        return [_record(r) for r in rows]

    def set_correction(self, request_id: uuid.UUID, corrected_label: int | None) -> bool:
        if corrected_label is not None and not 0 <= int(corrected_label) <= 9:
            raise ValueError(f"corrected_label must be 0-9 or None, not {corrected_label!r}")
        params = (corrected_label, str(request_id))
        changed = self._writer.run(
            lambda conn: (
                conn.execute("UPDATE dr_request_log SET corrected_label = ? WHERE request_id = ?", params).rowcount
            ),
            self._write_timeout,
        )
        return changed > 0

    def count(self) -> int:
        return self._reader().execute("SELECT COUNT(*) FROM dr_request_log").fetchone()[0]

    def health(self) -> Health:
        try:
            self._reader().execute("SELECT 1 FROM dr_request_log LIMIT 1").fetchall()
        except (sqlite3.Error, StoreClosedError) as exc:
            return Health(False, self.engine, f"{self.path}: {exc}")
        return Health(True, self.engine, str(self.path))

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns, self._reader_conns = self._reader_conns, []
        self._writer.close()
        for conn in conns:
            conn.close()
