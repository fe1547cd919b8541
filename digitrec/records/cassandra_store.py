"""Records in Apache Cassandra through cassandra-driver, under the seed's name ``cassandraModule``.

Layout (README.md, "Cassandra schema", has the exact CQL):
  * ``<table>``        partition = UTC day, clustering = request_id timeuuid DESC: bounded partitions,
                       and "latest" reads the head of a few partitions.
  * ``<table>_by_id``  request_id -> day, so ``get`` and ``set_correction`` need only the id.
  * ``<table>_days``   one small partition listing the days that hold records, newest first, so
                       ``latest`` walks exactly the non-empty days instead of guessing back in time.
  * ``<table>_image``  request_id -> the request's image, in chunks of at most 256 KB (Cassandra
                       handles big cells badly), written with the record and with the same TTL, so
                       any replica of the service can serve any record's image.
  * ``<table>_secrets`` name -> value: the service's access token and client-hash salt, shared by every
                       replica of the keyspace (``shared_secret``).

One Cluster/Session per store object, opened on first use (constructing never touches the network)
and kept for the life of the process. cassandra-driver is imported only here, only when connecting.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from digitrec.errors import ConfigurationError
from digitrec.records.codec import (
    as_utc,
    check_storable,
    decode_cursor,
    encode_cursor,
    marks_from_json,
    marks_to_json,
)
from digitrec.records.config import RecordsConfig
from digitrec.records.exceptions import StoreClosedError, StoreUnavailableError
from digitrec.records.legacy_time import parse_legacy_time
from digitrec.records.query import RecordFilter, StatsWindow
from digitrec.records.record import (
    RECORD_FIELDS,
    PredictionRecord,
    check_correction,
    check_corrector,
    correction_columns,
    correction_fits,
    new_request_id,
    wrong_correction_message,
)
from digitrec.records.stats import RecordStats, StatsAccumulator
from digitrec.records.store import Health, Page, RecordStore, check_image, check_images

log = logging.getLogger(__name__)

_DATA_COLUMNS = ("day", *RECORD_FIELDS)
_DAYS_EXTRA_TTL = 2 * 86400  # a day row outlives the records written late in that day
IMAGE_CHUNK_BYTES = 256 * 1024  # the largest image cell written
DDL_TIMEOUT = 120.0
"""Seconds a schema statement may take: a node flushes and forgets every table of a dropped keyspace, and
waits for schema agreement, which takes well over 30 s on a loaded machine."""


def image_chunks(data: bytes) -> list[bytes]:
    """``data`` cut into cells of at most ``IMAGE_CHUNK_BYTES``, in order."""
    return [data[i : i + IMAGE_CHUNK_BYTES] for i in range(0, len(data), IMAGE_CHUNK_BYTES)]


_TALLY_COLUMNS = (
    "request_id",
    "request_time",
    "model_name",
    "model_version",
    "label",
    "confidence",
    "corrected_label",
    "text",
    "corrected_text",
    "kind",
    "in_domain",
)
# Columns added to the record table after its first release. Cassandra 4.0 has no ADD IF NOT EXISTS:
# ``upgrade_table`` adds those the live table lacks (rows written before read as one-digit records).
ADDED_COLUMNS = (
    ("kind", "text"),
    ("text", "text"),
    ("digits", "text"),
    ("refused", "text"),
    ("in_domain", "boolean"),
    ("domain_score", "double"),
    ("corrected_text", "text"),
    ("correction_key_sha256", "text"),
    ("corrected_by", "text"),
    ("corrected_client", "text"),
    ("correction_rejected", "boolean"),
)


def add_column_cql(config: RecordsConfig, name: str, cql_type: str) -> str:
    return f"ALTER TABLE {config.keyspace}.{config.table} ADD {name} {cql_type}"


def schema_cql(config: RecordsConfig) -> list[str]:
    """The exact statements ``init-db`` runs (all idempotent), in order."""
    ks, table = config.keyspace, config.table
    return [
        (
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {config.replication.cql_map()}"
            " AND durable_writes = true"
        ),
        f"""CREATE TABLE IF NOT EXISTS {ks}.{table} (
    day date,
    request_id timeuuid,
    request_time timestamp,
    model_name text,
    model_version text,
    label int,
    class_name text,
    confidence double,
    probabilities list<double>,
    source text,
    file_name text,
    image_path text,
    image_sha256 text,
    processing_ms double,
    corrected_label int,
    kind text,
    text text,
    digits text,
    refused text,
    in_domain boolean,
    domain_score double,
    corrected_text text,
    correction_key_sha256 text,
    corrected_by text,
    corrected_client text,
    correction_rejected boolean,
    PRIMARY KEY ((day), request_id)
) WITH CLUSTERING ORDER BY (request_id DESC)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{table}_by_id (
    request_id timeuuid PRIMARY KEY,
    day date
)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{table}_days (
    bucket int,
    day date,
    PRIMARY KEY ((bucket), day)
) WITH CLUSTERING ORDER BY (day DESC)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{table}_image (
    request_id timeuuid,
    chunk int,
    chunks int STATIC,
    size int STATIC,
    data blob,
    PRIMARY KEY ((request_id), chunk)
)""",
        f"""CREATE TABLE IF NOT EXISTS {ks}.{table}_secrets (
    name text PRIMARY KEY,
    value text
)""",
    ]


def legacy_record(file_name: str | None, time: Any, digit: Any) -> PredictionRecord:
    """The record seed 002's ``insertRecord(file_name, time, digit)`` meant, with documented defaults.

    Model ``digits`` version ``legacy``, class name = the digit, confidence 0.0 and ten zero
    probabilities (the seed never stored them: zero means "not recorded"), source ``legacy``.
    ``time`` may be a datetime, Unix seconds, or the text the seed wrote (``'2019-09-24, 09:14'``), ISO
    8601 and other year-first forms; without a zone it is this machine's local time (see ``legacy_time``).
    """
    try:
        label = int(digit)
    except (TypeError, ValueError):
        raise ValueError(f"digit must be an integer 0-9, not {digit!r}") from None
    if not 0 <= label <= 9 or (isinstance(digit, float) and digit != label):
        raise ValueError(f"digit must be an integer 0-9, not {digit!r}")
    when = parse_legacy_time(time)
    return PredictionRecord(
        request_id=new_request_id(),
        request_time=when.replace(microsecond=when.microsecond // 1000 * 1000),
        model_name="digits",
        model_version="legacy",
        label=label,
        class_name=str(label),
        confidence=0.0,
        probabilities=(0.0,) * 10,
        source="legacy",
        file_name=None if file_name is None else str(file_name),
    )


class cassandraModule(RecordStore):
    """A thread-safe Cassandra record store; the seed's camelCase methods are thin aliases."""

    engine = "cassandra"
    find_scan_bound = 5_000
    """Rows one ``find`` call reads at most; a filtered page may come back short, with a cursor to go on."""
    find_chunk = 500
    stats_scan_bound = 200_000
    """Rows one ``summarize`` call reads at most; beyond it the result says ``truncated``."""

    def __init__(
        self,
        cluster_IP: Sequence[str] | str | None = None,
        cluster_port: int | None = None,
        *,
        config: RecordsConfig | None = None,
        **settings: Any,
    ) -> None:
        if config is None:
            config = RecordsConfig.from_env()
        if cluster_IP is not None:
            points = cluster_IP.split(",") if isinstance(cluster_IP, str) else list(cluster_IP)
            settings["contact_points"] = tuple(str(p).strip() for p in points if str(p).strip())
        if cluster_port is not None:
            settings["port"] = int(cluster_port)
        if settings:
            import dataclasses

            config = dataclasses.replace(config, **settings)
        if not config.contact_points:
            raise ConfigurationError(
                "cassandraModule needs contact points: pass cluster_IP=['10.0.0.5'] or set CASSANDRA_CONTACT_POINTS"
            )
        self.config = config
        self._keyspace = config.keyspace
        self._cluster: Any = None
        self._session: Any = None
        self._prepared: dict[str, Any] | None = None
        self._connect_lock = threading.Lock()
        self._inflight = threading.BoundedSemaphore(config.write_concurrency)
        self._known_days: set[dt.date] = set()
        self._closed = False

    # ------------------------------------------------------------------ connection and schema
    @property
    def keyspace(self) -> str:
        return self._keyspace

    @property
    def session(self) -> Any:
        """The driver Session (connects on first use)."""
        return self._connect()

    def _connect(self) -> Any:
        if self._session is not None:
            return self._session
        with self._connect_lock:
            if self._closed:
                raise StoreClosedError("the records store is closed")
            if self._session is None:
                self._session = self._open_session()
            return self._session

    def _open_session(self) -> Any:
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
        from cassandra.query import dict_factory

        cfg = self.config
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cfg.local_dc or "")),
            consistency_level=ConsistencyLevel.name_to_value[cfg.consistency],
            request_timeout=cfg.request_timeout,
            row_factory=dict_factory,
        )
        cluster = Cluster(
            contact_points=list(cfg.contact_points),
            port=cfg.port,
            auth_provider=PlainTextAuthProvider(cfg.username, cfg.password) if cfg.username else None,
            ssl_context=self._ssl_context() if cfg.uses_tls else None,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=cfg.connect_timeout,
            control_connection_timeout=cfg.connect_timeout,
            protocol_version=cfg.protocol_version,
        )
        try:
            session = cluster.connect()
        except Exception as exc:
            cluster.shutdown()
            raise StoreUnavailableError(
                f"cannot connect to Cassandra at {','.join(cfg.contact_points)}:{cfg.port}: {exc}"
            ) from exc
        self._cluster = cluster
        log.info("connected to %s", cfg.describe())
        return session

    def _ssl_context(self) -> ssl.SSLContext:
        cfg = self.config
        context = ssl.create_default_context(cafile=str(cfg.ssl_ca) if cfg.ssl_ca else None)
        context.check_hostname = cfg.ssl_verify_hostname
        if cfg.ssl_cert is not None:
            context.load_cert_chain(str(cfg.ssl_cert), str(cfg.ssl_key))
        return context

    def create_keyspace(self, keyspace: str | None = None) -> None:
        """Create the keyspace (idempotent) and make it the one this store uses."""
        if keyspace is not None and keyspace != self._keyspace:
            import dataclasses

            self.config = dataclasses.replace(self.config, keyspace=keyspace)  # validates the name
            self._keyspace = keyspace
            self._prepared = None
        self._ddl(schema_cql(self.config)[0])

    def create_table(self) -> None:
        """Create the record table and its two small index tables (idempotent)."""
        for statement in schema_cql(self.config)[1:]:
            self._ddl(statement)
        self._prepared = None

    def init_schema(self) -> list[str]:
        """Create keyspace and tables, and add the columns an older table lacks; returns the statements run
        (for ``records init-db``)."""
        statements = schema_cql(self.config)
        for statement in statements:
            self._ddl(statement)
        return statements + self.upgrade_table()

    def upgrade_table(self) -> list[str]:
        """Add the ``ADDED_COLUMNS`` the record table lacks (idempotent, safe against a concurrent upgrade)."""
        from cassandra import InvalidRequest

        run = []
        for name, cql_type in ADDED_COLUMNS:
            if name in self._table_columns():
                continue
            statement = add_column_cql(self.config, name, cql_type)
            try:
                self._ddl(statement)
            except InvalidRequest as exc:  # another process added it first
                if "already exist" not in str(exc):
                    raise
            run.append(statement)
        if run:
            log.info("records table upgraded: %s", "; ".join(run))
            self._prepared = None
        return run

    def _table_columns(self) -> set[str]:
        self._connect()
        keyspace = self._cluster.metadata.keyspaces.get(self._keyspace)
        table = None if keyspace is None else keyspace.tables.get(self.config.table)
        return set() if table is None else set(table.columns)

    def drop_keyspace(self) -> None:
        """Drop this store's keyspace and everything in it (used by tests with throw-away keyspaces)."""
        self._ddl(f"DROP KEYSPACE IF EXISTS {self._keyspace}")
        self._prepared = None

    def _ddl(self, statement: str) -> None:
        self._connect().execute(statement, timeout=max(DDL_TIMEOUT, self.config.request_timeout))

    def _schema_exists(self) -> bool:
        keyspace = self._cluster.metadata.keyspaces.get(self._keyspace)
        table = self.config.table
        names = {table, f"{table}_by_id", f"{table}_days", f"{table}_image", f"{table}_secrets"}
        if keyspace is None or not names <= set(keyspace.tables):
            return False
        return {name for name, _ in ADDED_COLUMNS} <= set(keyspace.tables[table].columns)

    def _statements(self) -> dict[str, Any]:
        """Prepared statements, preparing them (and creating a missing schema) once."""
        prepared = self._prepared
        if prepared is not None:
            return prepared
        session = self._connect()
        with self._connect_lock:
            if self._prepared is not None:
                return self._prepared
            if not self._schema_exists():
                # Checked against driver metadata first so many starting processes do not all send DDL.
                self.init_schema()
            t = f"{self._keyspace}.{self.config.table}"
            cols = ", ".join(_DATA_COLUMNS)
            texts = {
                "insert": f"INSERT INTO {t} ({cols}) VALUES ({', '.join('?' * len(_DATA_COLUMNS))}) USING TTL ?",
                "insert_id": f"INSERT INTO {t}_by_id (request_id, day) VALUES (?, ?) USING TTL ?",
                "insert_day": f"INSERT INTO {t}_days (bucket, day) VALUES (0, ?) USING TTL ?",
                "day_of": f"SELECT day FROM {t}_by_id WHERE request_id = ?",
                "one": f"SELECT {cols} FROM {t} WHERE day = ? AND request_id = ?",
                "day_all": f"SELECT {cols} FROM {t} WHERE day = ?",
                "day_head": f"SELECT {cols} FROM {t} WHERE day = ? LIMIT ?",
                "day_before": f"SELECT {cols} FROM {t} WHERE day = ? AND request_id < ? LIMIT ?",
                "day_tally": f"SELECT {', '.join(_TALLY_COLUMNS)} FROM {t} WHERE day = ?",
                "days": f"SELECT day FROM {t}_days WHERE bucket = 0",
                "days_before": f"SELECT day FROM {t}_days WHERE bucket = 0 AND day < ?",
                "correct": (
                    f"UPDATE {t} USING TTL ? SET corrected_label = ?, corrected_text = ?, corrected_by = ?, "
                    "corrected_client = ?, correction_rejected = false WHERE day = ? AND request_id = ?"
                ),
                "reject": f"UPDATE {t} USING TTL ? SET correction_rejected = ? WHERE day = ? AND request_id = ?",
                "delete_row": f"DELETE FROM {t} WHERE day = ? AND request_id = ?",
                "delete_id": f"DELETE FROM {t}_by_id WHERE request_id = ?",
                "delete_image": f"DELETE FROM {t}_image WHERE request_id = ?",
                "delete_day": f"DELETE FROM {t} WHERE day = ?",
                "delete_day_row": f"DELETE FROM {t}_days WHERE bucket = 0 AND day = ?",
                "days_oldest": f"SELECT day FROM {t}_days WHERE bucket = 0 AND day < ? ORDER BY day ASC LIMIT 1",
                "insert_chunk": (
                    f"INSERT INTO {t}_image (request_id, chunk, chunks, size, data) VALUES (?, ?, ?, ?, ?) USING TTL ?"
                ),
                "image": f"SELECT chunk, chunks, size, data FROM {t}_image WHERE request_id = ?",
                "has_image": f"SELECT chunks FROM {t}_image WHERE request_id = ? LIMIT 1",
            }
            self._prepared = {name: session.prepare(text) for name, text in texts.items()}
            return self._prepared

    # ------------------------------------------------------------------ writes
    def add(self, record: PredictionRecord, image: bytes | None = None) -> None:
        self.add_many([record], None if image is None else {record.request_id: image})

    def add_many(self, records: Iterable[PredictionRecord], images: Mapping[uuid.UUID, bytes] | None = None) -> None:
        records = list(records)
        for record in records:
            check_storable(record)
        clean = check_images(records, images or {})
        if records:
            self._write(records, clean)

    def add_image(self, record: PredictionRecord, image: bytes) -> bool:
        data = check_image(record, image)
        ttl = self.config.ttl_seconds
        if ttl:  # what is left of the record's lifetime, so the image does not outlive it
            age = (dt.datetime.now(dt.timezone.utc) - as_utc(record.request_time)).total_seconds()
            ttl = int(ttl - age)
            if ttl <= 0:
                return False
        self._run_all(self._image_work(record.request_id, data, ttl))
        return True

    def _image_work(self, request_id: uuid.UUID, data: bytes, ttl: int) -> list[tuple[Any, tuple]]:
        statement = self._statements()["insert_chunk"]
        chunks = image_chunks(data)
        return [(statement, (request_id, n, len(chunks), len(data), chunk, ttl)) for n, chunk in enumerate(chunks)]

    def _write(self, records: list[PredictionRecord], images: Mapping[uuid.UUID, bytes]) -> None:
        """Every row of the records and their images, sent together (``_run_all``)."""
        from cassandra.query import UNSET_VALUE

        stmts = self._statements()
        ttl = self.config.ttl_seconds
        day_ttl = ttl + _DAYS_EXTRA_TTL if ttl else 0
        new_days = {r.day for r in records} - self._known_days
        work: list[tuple[Any, tuple]] = [(stmts["insert_day"], (day, day_ttl)) for day in new_days]
        for r in records:
            work.append(
                (
                    stmts["insert"],
                    (
                        r.day,
                        r.request_id,
                        as_utc(r.request_time),
                        r.model_name,
                        r.model_version,
                        r.label,
                        r.class_name,
                        r.confidence,
                        list(r.probabilities),
                        r.source,
                        r.file_name,
                        r.image_path,
                        r.image_sha256,
                        r.processing_ms,
                        # Unset, not null: a replay must not erase a correction made in the meantime.
                        UNSET_VALUE if r.corrected_label is None else r.corrected_label,
                        r.kind,
                        # The reading columns stay unset for one-digit records (no null cells to keep).
                        *(
                            UNSET_VALUE if value is None else value
                            for value in (
                                r.text,
                                marks_to_json(r, "digits"),
                                marks_to_json(r, "refused"),
                                r.in_domain,
                                r.domain_score,
                                r.corrected_text,
                            )
                        ),
                        UNSET_VALUE if r.correction_key_sha256 is None else r.correction_key_sha256,
                        # Who corrected: set only with a correction, so a replay keeps the one made since.
                        *(
                            (UNSET_VALUE,) * 3
                            if r.correction is None
                            else (r.corrected_by, r.corrected_client, r.correction_rejected)
                        ),
                        ttl,
                    ),
                )
            )
            work.append((stmts["insert_id"], (r.request_id, r.day, ttl)))
            if r.request_id in images:
                work.extend(self._image_work(r.request_id, images[r.request_id], ttl))
        self._run_all(work)
        self._known_days |= new_days

    def _run_all(self, work: list[tuple[Any, tuple]]) -> None:
        """Send every statement asynchronously, at most ``write_concurrency`` in flight, then wait for all."""
        session = self._connect()
        futures = []
        try:
            for statement, params in work:
                self._inflight.acquire()
                try:
                    future = session.execute_async(statement, params)
                except BaseException:
                    self._inflight.release()
                    raise
                future.add_callbacks(self._release, self._release)
                futures.append(future)
            for future in futures:
                future.result()
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            raise StoreUnavailableError(f"Cassandra write failed: {type(exc).__name__}: {exc}") from exc

    def _release(self, _result: Any) -> None:
        self._inflight.release()

    def set_correction(
        self, request_id: uuid.UUID, corrected_label: int | str | None, by: str | None = None, client: str | None = None
    ) -> bool:
        correction = check_correction(corrected_label)
        check_corrector(by)
        if correction is None:
            by = client = None
        day = self._day_of(request_id)
        record = None if day is None else self._one(day, request_id)
        if record is None:
            return False
        if not correction_fits(record.kind, correction):
            raise ValueError(wrong_correction_message(record.kind))
        label, text = correction_columns(correction)
        self._connect().execute(
            self._statements()["correct"], (self.config.ttl_seconds, label, text, by, client, day, request_id)
        )
        return True

    def reject_correction(self, request_id: uuid.UUID, rejected: bool = True) -> bool:
        day = self._day_of(request_id)
        record = None if day is None else self._one(day, request_id)
        if record is None or record.correction is None:
            return False
        self._connect().execute(self._statements()["reject"], (self.config.ttl_seconds, rejected, day, request_id))
        return True

    def delete(self, request_id: uuid.UUID) -> bool:
        """Delete the record's row, its id row and its image partition (tombstones; compaction drops the
        data after the table's gc_grace_seconds)."""
        day = self._day_of(request_id)
        stmts = self._statements()
        work: list[tuple[Any, tuple]] = [(stmts["delete_id"], (request_id,)), (stmts["delete_image"], (request_id,))]
        if day is not None:
            work.append((stmts["delete_row"], (day, request_id)))
        found = day is not None and self._one(day, request_id) is not None
        self._run_all(work)
        return found

    def purge_before(self, day: dt.date, limit: int = 500) -> list[PredictionRecord]:
        """The oldest day partition before ``day``: up to ``limit`` of its records are deleted one by one
        (id row, image, row); an emptied day is deleted as a whole partition with its day-list row."""
        stmts, session = self._statements(), self._connect()
        row = session.execute(stmts["days_oldest"], (day,)).one()
        if row is None:
            return []
        oldest = _to_date(row["day"])
        found = [_record(r) for r in session.execute(stmts["day_head"], (oldest, limit))]
        work: list[tuple[Any, tuple]] = []
        for record in found:
            work += [
                (stmts["delete_id"], (record.request_id,)),
                (stmts["delete_image"], (record.request_id,)),
                (stmts["delete_row"], (oldest, record.request_id)),
            ]
        if len(found) < limit:  # the day is empty now: drop the partition and its entry in the day list
            work += [(stmts["delete_day"], (oldest,)), (stmts["delete_day_row"], (oldest,))]
            self._known_days.discard(oldest)
        self._run_all(work)
        if not found:
            return self.purge_before(day, limit)  # an empty day (its rows expired): the next one
        return found

    def shared_secret(self, name: str, make: Any, replace: bool = False) -> tuple[str, bool]:
        """A secret every replica of this keyspace shares (the access token, the client-hash salt):
        (value, made now). The first replica to ask writes ``make()`` with a lightweight transaction
        (INSERT ... IF NOT EXISTS), so all agree on one value; ``replace`` writes a new one (rotation)."""
        session, t = self._connect(), f"{self._keyspace}.{self.config.table}_secrets"
        self._statements()  # the schema, with the secrets table
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement

        if replace:  # a lightweight transaction too: never mixed with plain writes on the same row
            value = make()
            update = f"UPDATE {t} SET value = %s WHERE name = %s IF EXISTS"
            if session.execute(update, (value, name)).one()["[applied]"]:
                return value, True
        read = SimpleStatement(f"SELECT value FROM {t} WHERE name = %s", consistency_level=ConsistencyLevel.SERIAL)
        row = session.execute(read, (name,)).one()
        if row is not None and row["value"]:
            return row["value"], False
        value = make()
        insert = SimpleStatement(f"INSERT INTO {t} (name, value) VALUES (%s, %s) IF NOT EXISTS")
        applied = session.execute(insert, (name, value)).one()
        if applied["[applied]"]:
            return value, True
        return applied["value"], False

    # ------------------------------------------------------------------ reads
    def _day_of(self, request_id: uuid.UUID) -> dt.date | None:
        if request_id.version != 1:
            return None
        row = self._connect().execute(self._statements()["day_of"], (request_id,)).one()
        return None if row is None else _to_date(row["day"])

    def _one(self, day: dt.date, request_id: uuid.UUID) -> PredictionRecord | None:
        row = self._connect().execute(self._statements()["one"], (day, request_id)).one()
        return None if row is None else _record(row)

    def get(self, request_id: uuid.UUID) -> PredictionRecord | None:
        day = self._day_of(request_id)
        return None if day is None else self._one(day, request_id)

    def get_image(self, request_id: uuid.UUID) -> bytes | None:
        if request_id.version != 1:
            return None
        rows = list(self._connect().execute(self._statements()["image"], (request_id,)))
        if not rows or [r["chunk"] for r in rows] != list(range(rows[0]["chunks"])):
            return None  # no image, or one whose write has not completed (its add() has not returned)
        data = b"".join(r["data"] for r in rows)
        return data if len(data) == rows[0]["size"] else None

    def has_image(self, request_id: uuid.UUID) -> bool:
        if request_id.version != 1:
            return False
        return self._connect().execute(self._statements()["has_image"], (request_id,)).one() is not None

    def latest(self, limit: int = 20, cursor: str | None = None) -> Page:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        stmts, session = self._statements(), self._connect()
        found: list[PredictionRecord] = []
        if cursor is None:
            days = session.execute(stmts["days"])
        else:
            cursor_day, cursor_id = decode_cursor(cursor)
            rows = session.execute(stmts["day_before"], (cursor_day, cursor_id, limit + 1))
            found.extend(_record(r) for r in rows)
            days = session.execute(stmts["days_before"], (cursor_day,))
        for day_row in days:  # the driver pages through the day list lazily
            if len(found) > limit:
                break
            rows = session.execute(stmts["day_head"], (_to_date(day_row["day"]), limit + 1 - len(found)))
            found.extend(_record(r) for r in rows)
        page = found[:limit]
        more = len(found) > limit
        return Page(page, encode_cursor(page[-1].day, page[-1].request_id) if more else None)

    def by_day(self, day: dt.date) -> list[PredictionRecord]:
        return [_record(r) for r in self._connect().execute(self._statements()["day_all"], (day,))]

    def find(self, where: RecordFilter, limit: int = 20, cursor: str | None = None) -> Page:
        """Day partitions newest first, filtered here: never ALLOW FILTERING across the cluster.

        Reads at most ``find_scan_bound`` rows per call (in chunks, each one partition slice); when the
        bound stops it before ``limit`` matches, the page is short and its cursor continues the scan.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if where.is_empty:
            return self.latest(limit, cursor)
        stmts, session = self._statements(), self._connect()
        start: tuple[dt.date, uuid.UUID] | None = decode_cursor(cursor) if cursor is not None else None
        found: list[PredictionRecord] = []
        scanned = 0
        last: tuple[dt.date, uuid.UUID] | None = None
        for day in self._days_from(start[0] if start else None, where.day):
            after = start[1] if start is not None and day == start[0] else None
            while True:
                if after is None:
                    rows = session.execute(stmts["day_head"], (day, self.find_chunk))
                else:
                    rows = session.execute(stmts["day_before"], (day, after, self.find_chunk))
                n = 0
                for row in rows:
                    n += 1
                    scanned += 1
                    record = _record(row)
                    last = (day, record.request_id)
                    if where.matches(record):
                        found.append(record)
                        if len(found) > limit:
                            page = found[:limit]
                            return Page(page, encode_cursor(page[-1].day, page[-1].request_id))
                    if scanned >= self.find_scan_bound:
                        return Page(found, encode_cursor(*last))
                if n < self.find_chunk:
                    break
                after = last[1]
        return Page(found, None)

    def _days_from(self, cursor_day: dt.date | None, only: dt.date | None) -> Iterable[dt.date]:
        """The days to scan, newest first: the cursor's day, then older days that hold records."""
        if only is not None:
            if cursor_day is None or only <= cursor_day:
                yield only
            return
        stmts, session = self._statements(), self._connect()
        if cursor_day is None:
            days = session.execute(stmts["days"])
        else:
            yield cursor_day
            days = session.execute(stmts["days_before"], (cursor_day,))
        for row in days:
            yield _to_date(row["day"])

    def summarize(self, window: StatsWindow) -> RecordStats:
        """A bounded scan of the window's day partitions (only the columns the tallies need)."""
        stmts, session = self._statements(), self._connect()
        acc = StatsAccumulator()
        scanned = 0
        truncated = False
        for day in window.days_newest_first():
            for row in session.execute(stmts["day_tally"], (day,)):
                if scanned >= self.stats_scan_bound:
                    truncated = True
                    break
                scanned += 1
                if row["model_name"] != window.model or (
                    window.version is not None and row["model_version"] != window.version
                ):
                    continue
                acc.add(
                    request_id=row["request_id"],
                    time_iso=as_utc(row["request_time"]).isoformat(timespec="milliseconds"),
                    version=row["model_version"],
                    label=row["label"],
                    confidence=row["confidence"],
                    corrected_label=row["corrected_label"],
                    text=row.get("text"),
                    corrected_text=row.get("corrected_text"),
                    kind=row.get("kind"),
                    in_domain=row.get("in_domain"),
                )
            if truncated:
                break
        stats = acc.finish(self.get)
        stats.scanned, stats.truncated = scanned, truncated
        return stats

    def health(self) -> Health:
        try:
            row = (
                self._connect()
                .execute("SELECT release_version FROM system.local", timeout=self.config.request_timeout)
                .one()
            )
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            return Health(False, self.engine, f"{type(exc).__name__}: {exc}")
        points = ",".join(self.config.contact_points)
        return Health(
            True, self.engine, f"{points}:{self.config.port} Cassandra {row['release_version']} {self._keyspace}"
        )

    def close(self) -> None:
        with self._connect_lock:
            self._closed = True
            cluster, self._cluster, self._session = self._cluster, None, None
        if cluster is not None:
            cluster.shutdown()

    # ------------------------------------------------------------------ seed 002 names
    def insert_record(self, file_name: str | None, time: Any, digit: Any) -> uuid.UUID:
        """Store one seed-style record (see ``legacy_record`` for the defaults); returns its request id."""
        record = legacy_record(file_name, time, digit)
        self.add(record)
        return record.request_id

    createKeySpace = create_keyspace
    creatDRTable = create_table
    insertRecord = insert_record


def _to_date(value: Any) -> dt.date:
    return value.date() if hasattr(value, "date") and not isinstance(value, dt.date) else value


def _record(row: dict) -> PredictionRecord:
    return PredictionRecord(
        request_id=row["request_id"],
        request_time=as_utc(row["request_time"]),
        model_name=row["model_name"],
        model_version=row["model_version"],
        label=row["label"],
        class_name=row["class_name"],
        confidence=row["confidence"],
        probabilities=tuple(row["probabilities"] or ()),
        source=row["source"],
        file_name=row["file_name"],
        image_path=row["image_path"],
        image_sha256=row["image_sha256"],
        processing_ms=row["processing_ms"] or 0.0,
        corrected_label=row["corrected_label"],
        kind=row.get("kind") or "digit",
        text=row.get("text"),
        digits=marks_from_json(row.get("digits")),
        refused=marks_from_json(row.get("refused")),
        in_domain=row.get("in_domain"),
        domain_score=row.get("domain_score"),
        corrected_text=row.get("corrected_text"),
        correction_key_sha256=row.get("correction_key_sha256"),
        corrected_by=row.get("corrected_by"),
        corrected_client=row.get("corrected_client"),
        correction_rejected=bool(row.get("correction_rejected") or False),
    )
