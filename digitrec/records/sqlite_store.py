"""The default store: an embedded SQLite file (WAL) on the data volume, so no database server is needed."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from digitrec.records.checkpointer import JOURNAL_SIZE_LIMIT, WalCheckpointer
from digitrec.records.codec import (
    as_utc,
    check_storable,
    decode_cursor,
    encode_cursor,
    marks_from_json,
    marks_to_json,
    timeuuid_sort_key,
)
from digitrec.records.exceptions import StoreClosedError
from digitrec.records.group_commit import GroupCommitWriter
from digitrec.records.query import RecordFilter, StatsWindow
from digitrec.records.record import (
    CORRECTION_FIELDS,
    RECORD_FIELDS,
    PredictionRecord,
    check_correction,
    check_corrector,
    correction_columns,
    correction_fits,
    wrong_correction_message,
)
from digitrec.records.stats import REVIEW_LIMIT, RecordStats, Tally, VersionSpan
from digitrec.records.store import Health, Page, RecordStore, check_image, check_images

log = logging.getLogger(__name__)

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
    corrected_label INTEGER,
    kind            TEXT NOT NULL DEFAULT 'digit', -- 'digit' (one prediction) or 'reading' (a row of digits)
    text            TEXT,                    -- a reading's digits, left to right
    digits          TEXT,                    -- JSON [{label, confidence, box, in_domain, domain_score}]
    refused         TEXT,                    -- a reading's refused marks, same JSON
    in_domain       INTEGER,                 -- 0: something was refused; 1: all in domain; NULL: not judged
    domain_score    REAL,
    corrected_text  TEXT,                    -- a reading's correction: the right digits
    correction_key_sha256 TEXT,              -- SHA-256 of the answer's correction key (never the key)
    corrected_by    TEXT,                    -- role that made the correction (submitter, reviewer, admin, local)
    corrected_client TEXT,                   -- salted hash of the correcting client's address
    correction_rejected INTEGER NOT NULL DEFAULT 0  -- a reviewer rejected it: fine-tuning skips it
);
CREATE INDEX IF NOT EXISTS dr_request_log_newest ON dr_request_log (day DESC, sort_key DESC);
CREATE TABLE IF NOT EXISTS dr_request_image (
    request_id      TEXT PRIMARY KEY,        -- the record's request id
    size            INTEGER NOT NULL,        -- bytes
    data            BLOB NOT NULL            -- the image as stored (PNG); one cell, SQLite has no cell limit to respect
);
"""

# Indexes for the record filters (see docs/dashboard.md): each ends in the page order (day, sort_key) so
# an equality filter reads one index range newest-first and stops after a page. The model index also
# carries the columns the dashboard aggregates (both corrections included), so those scans never touch
# the table. Created at open with IF NOT EXISTS, which is also the migration of databases made before
# they existed; an index whose definition changed since is dropped and built again.
FILTER_INDEXES = """
CREATE INDEX IF NOT EXISTS dr_filter_model ON dr_request_log
    (model_name, day, sort_key, model_version, confidence, corrected_label, corrected_text);
CREATE INDEX IF NOT EXISTS dr_request_log_version ON dr_request_log (model_version, day, sort_key, model_name);
CREATE INDEX IF NOT EXISTS dr_filter_label ON dr_request_log (label, day, sort_key, model_name, model_version);
CREATE INDEX IF NOT EXISTS dr_filter_corrections ON dr_request_log
    (day, sort_key, model_name, model_version, label, corrected_label, confidence)
    WHERE (corrected_label IS NOT NULL OR corrected_text IS NOT NULL);
CREATE INDEX IF NOT EXISTS dr_filter_unsure ON dr_request_log
    (day, sort_key, model_name, model_version, label, corrected_label, confidence, corrected_text)
    WHERE confidence < 0.5;
CREATE INDEX IF NOT EXISTS dr_filter_refused ON dr_request_log
    (day, sort_key, model_name, model_version, label, corrected_label, confidence) WHERE in_domain = 0;
CREATE INDEX IF NOT EXISTS dr_count_readings ON dr_request_log (model_name, day, model_version) WHERE kind = 'reading';
"""
# Columns added to dr_request_log after its first release, with their definitions: ``migrate`` adds the
# missing ones to an older file (existing rows read as one-digit records that were never judged).
ADDED_COLUMNS = (
    ("kind", "TEXT NOT NULL DEFAULT 'digit'"),
    ("text", "TEXT"),
    ("digits", "TEXT"),
    ("refused", "TEXT"),
    ("in_domain", "INTEGER"),
    ("domain_score", "REAL"),
    ("corrected_text", "TEXT"),
    ("correction_key_sha256", "TEXT"),
    ("corrected_by", "TEXT"),
    ("corrected_client", "TEXT"),
    ("correction_rejected", "INTEGER NOT NULL DEFAULT 0"),
)
# Index names of earlier layouts, dropped when a database is migrated.
OBSOLETE_INDEXES = (
    "dr_filter_corrected",  # label corrections only, from before readings
    "dr_request_log_label",
    "dr_request_log_corrected",
    "dr_request_log_unsure",
    "dr_request_log_model_day",
    "dr_request_log_confidence",
)
# Hourly tallies per model, version and confidence bin, kept by triggers in the same transaction as each
# write (a replayed upsert subtracts its old row and adds the new one), so the dashboard reads a few
# thousand tally rows instead of grouping a million records.
_KEY = "{r}.model_name, substr({r}.request_time, 1, 13), {r}.model_version, " + (
    "MIN(MAX(CAST({r}.confidence * 20 AS INTEGER), 0), 19)"
)
_CORRECTED = "({r}.corrected_label IS NOT NULL OR {r}.corrected_text IS NOT NULL)"
_WRONG = (
    "(({r}.corrected_label IS NOT NULL AND {r}.corrected_label != {r}.label) "
    "OR ({r}.corrected_text IS NOT NULL AND {r}.corrected_text != {r}.text))"
)
_TRIGGERS = ("dr_request_log_tally_insert", "dr_request_log_tally_delete", "dr_request_log_tally_update")


def _tally_add(r: str, sign: str) -> str:
    """The trigger statement adding (sign "") or removing (sign "-") row ``r`` from its tally."""
    return (
        f"INSERT INTO dr_request_hourly VALUES ({_KEY.format(r=r)}, {sign}1, {sign}{_CORRECTED.format(r=r)}, "
        f"{sign}{_WRONG.format(r=r)}) ON CONFLICT DO UPDATE SET count = count + excluded.count, "
        "corrected = corrected + excluded.corrected, wrong = wrong + excluded.wrong;"
    )


ROLLUP = f"""
CREATE TABLE IF NOT EXISTS dr_request_hourly (
    model_name    TEXT NOT NULL,
    hour          TEXT NOT NULL,             -- UTC, YYYY-MM-DDTHH
    model_version TEXT NOT NULL,
    bin           INTEGER NOT NULL,          -- confidence bin of width 0.05 (0-19)
    count         INTEGER NOT NULL,
    corrected     INTEGER NOT NULL,
    wrong         INTEGER NOT NULL,          -- corrected to another label (a reading: another text)
    PRIMARY KEY (model_name, hour, model_version, bin)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS dr_request_log_tally_insert AFTER INSERT ON dr_request_log BEGIN
    {_tally_add("NEW", "")}
END;
CREATE TRIGGER IF NOT EXISTS dr_request_log_tally_delete AFTER DELETE ON dr_request_log BEGIN
    {_tally_add("OLD", "-")}
END;
CREATE TRIGGER IF NOT EXISTS dr_request_log_tally_update
AFTER UPDATE OF model_name, request_time, model_version, label, confidence, corrected_label, text, corrected_text
ON dr_request_log BEGIN
    {_tally_add("OLD", "-")}
    {_tally_add("NEW", "")}
END;
"""
_BACKFILL = (
    f"INSERT INTO dr_request_hourly SELECT {_KEY.format(r='r')}, COUNT(*), SUM({_CORRECTED.format(r='r')}), "
    f"SUM({_WRONG.format(r='r')}) FROM dr_request_log AS r GROUP BY 1, 2, 3, 4;"
)

# The partial index's condition, written out in queries exactly as in the index so SQLite may use it.
CORRECTED = "(corrected_label IS NOT NULL OR corrected_text IS NOT NULL)"

# A confidence filter at or below this also names it literally, so SQLite may use the partial index above.
UNSURE = 0.5

_COLUMNS = ("request_id", "day", "sort_key", *RECORD_FIELDS[1:])
# Replays of the same request id overwrite the record but keep a correction (and who made it) made in
# between: the replayed copy's correction fields count only when it carries a correction itself.
_REPLAY_CORRECTED = "(excluded.corrected_label IS NOT NULL OR excluded.corrected_text IS NOT NULL)"
_UPSERT = (
    f"INSERT INTO dr_request_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT(request_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:] if c not in CORRECTION_FIELDS)
    + "".join(
        f", {c} = CASE WHEN {_REPLAY_CORRECTED} THEN excluded.{c} ELSE dr_request_log.{c} END"
        for c in CORRECTION_FIELDS
    )
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM dr_request_log"
# An image never changes for a request id, so a replay may simply overwrite it.
_UPSERT_IMAGE = "INSERT OR REPLACE INTO dr_request_image (request_id, size, data) VALUES (?, ?, ?)"


SCHEMA_SETUP_SECONDS = 60.0  # how long opening a store retries a schema setup that raced another process


def connect(path: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in autocommit mode with WAL; NORMAL survives a process crash, FULL also power loss.

    ``secure_delete`` makes SQLite overwrite what a delete frees with zeros, so a deleted record's image
    does not linger in free pages of the file (``scrub_log`` then clears the write-ahead log too)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA secure_delete=ON")
    return conn


SCRUB_ATTEMPTS = 50


def scrub_log(path: Path, synchronous: str = "NORMAL") -> bool:
    """Copy the write-ahead log into the file and truncate it to zero bytes: the log still holds the
    pages a deleted record was written in until then. True when the log is empty afterwards; a reader
    holding an old snapshot can delay that, so it is tried again for a few seconds."""
    conn = connect(path, synchronous)
    try:
        for _ in range(SCRUB_ATTEMPTS):
            busy, _frames, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.1)
        return False
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection) -> None:
    """Bring an existing database up to date (idempotent); building the indexes of a big file takes a while."""
    _add_columns(conn)
    missing = _missing_indexes(conn)
    if missing:
        started = time.perf_counter()
        dropped = (*OBSOLETE_INDEXES, *missing)  # a stale definition goes before it is made anew
        conn.executescript("".join(f"DROP INDEX IF EXISTS {name};" for name in dropped) + FILTER_INDEXES)
        if conn.execute("SELECT 1 FROM dr_request_log LIMIT 1").fetchone() is not None:
            log.info("built record indexes %s in %.1f s", ", ".join(missing), time.perf_counter() - started)
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'dr_request_hourly'").fetchone() is None:
        started = time.perf_counter()
        # one transaction: no write may land between the backfill and the triggers
        _in_transaction(conn, ROLLUP + _BACKFILL)
        log.info("built hourly record tallies in %.1f s", time.perf_counter() - started)
    else:
        _renew_triggers(conn)
    analyze_if_stale(conn)


def _in_transaction(conn: sqlite3.Connection, script: str) -> None:
    try:
        conn.executescript(f"BEGIN IMMEDIATE;{script}COMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _add_columns(conn: sqlite3.Connection) -> None:
    """Add the columns of ``ADDED_COLUMNS`` a file made by an older version lacks (a quick schema edit:
    SQLite does not rewrite the rows)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(dr_request_log)")}
    missing = [(name, decl) for name, decl in ADDED_COLUMNS if name not in have]
    if not missing:
        return
    # Another process may have added them meanwhile: look again inside the write transaction.
    statements = "".join(f"ALTER TABLE dr_request_log ADD COLUMN {name} {decl};" for name, decl in missing)
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(dr_request_log)")}
        for name, decl in missing:
            if name not in have:
                conn.execute(f"ALTER TABLE dr_request_log ADD COLUMN {name} {decl}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info("records schema upgraded: %s", statements)


def _renew_triggers(conn: sqlite3.Connection) -> None:
    """Replace tally triggers written before readings existed (they counted only label corrections)."""
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'dr_request_log_tally_update'"
    ).fetchone()
    if found is not None and "corrected_text" in found[0]:
        return
    _in_transaction(conn, "".join(f"DROP TRIGGER IF EXISTS {name};" for name in _TRIGGERS) + ROLLUP)


def analyze_if_stale(conn: sqlite3.Connection, min_rows: int = 10_000) -> bool:
    """Refresh the planner's statistics once the table is 4x the size they describe (sampled, ~1 s per million).

    With them SQLite picks the narrowest index when several filters are combined.
    """
    rows = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM dr_request_log").fetchone()[0]
    if rows < min_rows:
        return False
    try:
        stat = conn.execute(
            "SELECT stat FROM sqlite_stat1 WHERE tbl = 'dr_request_log' AND idx = 'dr_filter_model'"
        ).fetchone()
    except sqlite3.OperationalError:  # no sqlite_stat1 table yet
        stat = None
    if stat is not None and int(stat[0].split()[0]) * 4 >= rows:
        return False
    conn.execute("PRAGMA analysis_limit=2000")
    conn.execute("ANALYZE dr_request_log")
    return True


def _missing_indexes(conn: sqlite3.Connection) -> list[str]:
    """Filter indexes absent from the file, or present with another definition (made by an older version)."""
    wanted = {
        re.search(r"INDEX IF NOT EXISTS (\w+)", statement).group(1): " ".join(
            statement.replace(" IF NOT EXISTS", "").split()
        )
        for statement in FILTER_INDEXES.split(";")
        if statement.strip()
    }
    have = {
        name: " ".join((sql or "").split())
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
    }
    return [name for name, sql in wanted.items() if have.get(name) != sql]


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
        record.kind,
        record.text,
        marks_to_json(record, "digits"),
        marks_to_json(record, "refused"),
        None if record.in_domain is None else int(record.in_domain),
        record.domain_score,
        record.corrected_text,
        record.correction_key_sha256,
        record.corrected_by,
        record.corrected_client,
        int(record.correction_rejected),
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
        kind,
        text,
        digits,
        refused,
        in_domain,
        domain_score,
        corrected_text,
        correction_key_sha256,
        corrected_by,
        corrected_client,
        correction_rejected,
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
        kind=kind,
        text=text,
        digits=marks_from_json(digits),
        refused=marks_from_json(refused),
        in_domain=None if in_domain is None else bool(in_domain),
        domain_score=domain_score,
        corrected_text=corrected_text,
        correction_key_sha256=correction_key_sha256,
        corrected_by=corrected_by,
        corrected_client=corrected_client,
        correction_rejected=bool(correction_rejected),
    )


def _where(where: RecordFilter) -> tuple[list[str], list]:
    """SQL conditions (written so the filter indexes apply) and their parameters."""
    conditions: list[str] = []
    params: list = []
    for column, value in (
        ("model_name", where.model),
        ("model_version", where.version),
        ("label", where.label),
        ("day", None if where.day is None else where.day.isoformat()),
    ):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if where.corrected:
        conditions.append(CORRECTED)
    if where.refused:
        conditions.append("in_domain = 0")
    if where.confidence_below is not None:
        if where.confidence_below <= UNSURE:
            conditions.append(f"confidence < ? AND confidence < {UNSURE}")
        else:  # "+" keeps SQLite off the confidence index: newest-first with a skip is faster here
            conditions.append("+confidence < ?")
        params.append(float(where.confidence_below))
    return conditions, params


def _index_for(where: RecordFilter) -> str:
    """Corrected and unsure records are few, and their partial indexes hold every filtered column: reading
    one of them newest first never touches the table, whatever else is filtered (SQLite's planner,
    without this hint, sometimes prefers a wider index and a table lookup per row)."""
    if where.corrected:
        return " INDEXED BY dr_filter_corrections"
    if where.refused:
        return " INDEXED BY dr_filter_refused"
    if where.confidence_below is not None and where.confidence_below <= UNSURE:
        return " INDEXED BY dr_filter_unsure"
    return ""


class SQLiteStore(RecordStore):
    """Records in ``<data dir>/records.sqlite3``; writes group-committed (``group_commit``), the WAL
    checkpointed by a background thread (``checkpointer``) unless ``background_checkpoints`` is off."""

    engine = "sqlite"

    def __init__(
        self,
        path: Path | str,
        synchronous: str = "NORMAL",
        write_timeout: float = 10.0,
        *,
        background_checkpoints: bool = True,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._write_timeout = write_timeout
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._background_checkpoints = background_checkpoints
        self._checkpointer: WalCheckpointer | None = None
        self._writer = GroupCommitWriter(
            self._open_writer, name=f"sqlite-writer:{self.path.name}", on_commit=self._committed
        )
        if background_checkpoints:
            self._checkpointer = WalCheckpointer(
                lambda: connect(self.path, self._synchronous),
                f"{self.path}-wal",
                name=f"sqlite-checkpoint:{self.path.name}",
            )

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def _open_writer(self) -> sqlite3.Connection:
        """The write connection, with the schema made or brought up to date.

        Several processes (gunicorn workers) open one new file at the same moment. Switching a new file
        to WAL, and in WAL mode a statement that read the schema and must then write it after another
        process changed the file, fail at once with "database is locked" (SQLite does not wait in those
        cases, whatever the busy timeout), so the idempotent setup is simply run again until it goes
        through.
        """
        deadline = time.monotonic() + SCHEMA_SETUP_SECONDS
        while True:
            conn = None
            try:
                conn = connect(self.path, self._synchronous)  # the switch to WAL does not wait either
                conn.executescript(SCHEMA)
                migrate(conn)
                if self._background_checkpoints:  # the checkpointer thread does it, off the commit path
                    conn.execute("PRAGMA wal_autocheckpoint=0")
                    conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
                return conn
            except sqlite3.OperationalError as exc:
                if conn is not None:
                    conn.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                log.debug("records schema setup raced another process (%s); again", exc)
                time.sleep(random.uniform(0.01, 0.1))

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
        self.add_checked(records, check_images(records, images or {}))

    def add_checked(self, records: list[PredictionRecord], images: dict[uuid.UUID, bytes]) -> None:
        clean = images
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

    def find(self, where: RecordFilter, limit: int = 20, cursor: str | None = None) -> Page:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        conditions, params = _where(where)
        if cursor is not None:
            day, request_id = decode_cursor(cursor)
            if where.day is None:
                conditions.append("(day, sort_key) < (?, ?)")
                params += [day.isoformat(), timeuuid_sort_key(request_id)]
            elif day == where.day:  # not as a row value: SQLite would then give up the day= range
                conditions.append("sort_key < ?")
                params.append(timeuuid_sort_key(request_id))
            elif day < where.day:
                return Page([], None)
        sql = _SELECT + _index_for(where)
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        sql += " ORDER BY day DESC, sort_key DESC LIMIT ?"
        rows = self._reader().execute(sql, (*params, limit + 1)).fetchall()
        records = [_record(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(records, encode_cursor(records[-1].day, records[-1].request_id) if more else None)

    def summarize(self, window: StatsWindow) -> RecordStats:
        """Tallies from the hourly table; exact first/last times, confusion and review from indexes."""
        conn = self._reader()
        first, last = window.first_day.isoformat(), window.last_day.isoformat()
        after_last = (window.last_day + dt.timedelta(days=1)).isoformat()
        version_sql = "" if window.version is None else " AND model_version = ?"
        version_arg = () if window.version is None else (window.version,)
        stats = RecordStats()
        hours: dict[str, list[str]] = {}
        for hour, version, bin_, count, corrected, wrong in conn.execute(
            "SELECT hour, model_version, bin, count, corrected, wrong FROM dr_request_hourly "
            f"WHERE model_name = ? AND hour >= ? AND hour < ? AND count > 0{version_sql}",
            (window.model, first, after_last, *version_arg),
        ):
            stats.hourly.setdefault((hour, version), Tally()).add(count, corrected, wrong)
            stats.histogram[bin_].add(count, corrected, wrong)
            span = stats.versions.get(version)
            if span is None:
                span = stats.versions[version] = VersionSpan(version, hour, hour)
                hours[version] = [hour, hour]
            span.tally.add(count, corrected, wrong)
            hours[version] = [min(hours[version][0], hour), max(hours[version][1], hour)]
            stats.scanned += count
        for version, (first_hour, last_hour) in hours.items():
            span = stats.versions[version]
            span.first = self._edge_time(conn, window.model, version, first_hour, "MIN")
            span.last = self._edge_time(conn, window.model, version, last_hour, "MAX")
        where = f"model_name = ? AND day BETWEEN ? AND ?{version_sql}"
        params = (window.model, first, last, *version_arg)
        for label, corrected_label, count in conn.execute(
            "SELECT label, corrected_label, COUNT(*) FROM dr_request_log INDEXED BY dr_filter_corrections "
            f"WHERE {CORRECTED} AND corrected_label IS NOT NULL AND {where} GROUP BY 1, 2",
            params,
        ):
            stats.confusion[(label, corrected_label)] = count
        # The least confident usually lie below 0.5, in the small partial index; only when fewer than a
        # list's worth do, the window's model index (which carries confidence) is scanned instead.
        review = conn.execute(
            f"{_SELECT} INDEXED BY dr_filter_unsure WHERE confidence < {UNSURE} AND NOT {CORRECTED} "
            f"AND {where} ORDER BY confidence ASC, sort_key DESC LIMIT ?",
            (*params, REVIEW_LIMIT),
        ).fetchall()
        if len(review) < REVIEW_LIMIT:
            review = conn.execute(
                f"{_SELECT} INDEXED BY dr_filter_model WHERE NOT {CORRECTED} AND {where} "
                "ORDER BY confidence ASC, sort_key DESC LIMIT ?",
                (*params, REVIEW_LIMIT),
            ).fetchall()
        stats.review = [_record(r) for r in review]
        stats.readings = conn.execute(
            f"SELECT COUNT(*) FROM dr_request_log INDEXED BY dr_count_readings WHERE kind = 'reading' AND {where}",
            params,
        ).fetchone()[0]
        stats.refused = conn.execute(
            f"SELECT COUNT(*) FROM dr_request_log INDEXED BY dr_filter_refused WHERE in_domain = 0 AND {where}",
            params,
        ).fetchone()[0]
        return stats

    @staticmethod
    def _edge_time(conn: sqlite3.Connection, model: str, version: str, hour: str, edge: str) -> str:
        """The request time of a version's first (MIN) or last (MAX) record on that hour's day, in store
        order (a record's id and time are minted together); one seek on the version index."""
        order = "ASC" if edge == "MIN" else "DESC"
        row = conn.execute(
            f"SELECT request_time FROM dr_request_log INDEXED BY dr_request_log_version "
            f"WHERE model_version = ? AND day = ? AND model_name = ? ORDER BY sort_key {order} LIMIT 1",
            (version, hour[:10], model),
        ).fetchone()
        return hour if row is None else row[0]

    def by_day(self, day: dt.date) -> list[PredictionRecord]:
        rows = self._reader().execute(f"{_SELECT} WHERE day = ? ORDER BY sort_key DESC", (day.isoformat(),)).fetchall()
        return [_record(r) for r in rows]

    def set_correction(
        self, request_id: uuid.UUID, corrected_label: int | str | None, by: str | None = None, client: str | None = None
    ) -> bool:
        correction = check_correction(corrected_label)
        check_corrector(by)
        if correction is None:
            by = client = None

        def job(conn: sqlite3.Connection) -> str | None:
            found = conn.execute("SELECT kind FROM dr_request_log WHERE request_id = ?", (str(request_id),)).fetchone()
            if found is not None and correction_fits(found[0], correction):
                conn.execute(
                    "UPDATE dr_request_log SET corrected_label = ?, corrected_text = ?, corrected_by = ?, "
                    "corrected_client = ?, correction_rejected = 0 WHERE request_id = ?",
                    (*correction_columns(correction), by, client, str(request_id)),
                )
            return None if found is None else found[0]

        kind = self._writer.run(job, self._write_timeout)
        if kind is None:
            return False
        if not correction_fits(kind, correction):
            raise ValueError(wrong_correction_message(kind))
        return True

    def reject_correction(self, request_id: uuid.UUID, rejected: bool = True) -> bool:
        params = (int(rejected), str(request_id))
        changed = self._writer.run(
            lambda conn: (
                conn.execute(
                    f"UPDATE dr_request_log SET correction_rejected = ? WHERE request_id = ? AND {CORRECTED}", params
                ).rowcount
            ),
            self._write_timeout,
        )
        return changed > 0

    def delete(self, request_id: uuid.UUID) -> bool:
        params = (str(request_id),)

        def job(conn: sqlite3.Connection) -> int:
            removed = conn.execute("DELETE FROM dr_request_log WHERE request_id = ?", params).rowcount
            return removed + conn.execute("DELETE FROM dr_request_image WHERE request_id = ?", params).rowcount

        removed = self._writer.run(job, self._write_timeout)
        if removed:
            self.scrub()
        return removed > 0

    def purge_before(self, day: dt.date, limit: int = 500) -> list[PredictionRecord]:
        """Delete at most ``limit`` of the oldest records of days before ``day`` (one transaction); the
        log is scrubbed by the caller once it has purged every batch (``deletion.purge``)."""
        query = f"{_SELECT} WHERE day < ? ORDER BY day, sort_key LIMIT ?"

        def job(conn: sqlite3.Connection) -> list[PredictionRecord]:
            found = [_record(row) for row in conn.execute(query, (day.isoformat(), limit)).fetchall()]
            ids = [(str(r.request_id),) for r in found]
            conn.executemany("DELETE FROM dr_request_log WHERE request_id = ?", ids)
            conn.executemany("DELETE FROM dr_request_image WHERE request_id = ?", ids)
            return found

        return self._writer.run(job, self._write_timeout)

    def scrub(self) -> bool:
        return scrub_log(self.path, self._synchronous)

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
        if self._checkpointer is not None:
            self._checkpointer.close()
        for conn in conns:
            conn.close()
