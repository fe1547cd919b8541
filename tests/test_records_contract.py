"""One contract for every record store: SQLite always; Cassandra whenever CASSANDRA_CONTACT_POINTS is set.

Each engine also runs wrapped in the durable spool (what ``open_store`` returns). Cassandra tests use
a throw-away keyspace per run (a fresh table per test) and drop it at the end.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import uuid

import pytest
from records_helpers import (
    cassandra_env_config,
    days_ago,
    image_bytes,
    make_record,
    new_keyspace_name,
    run_writers,
    with_image,
)

from digitrec.records.config import RecordsConfig
from digitrec.records.exceptions import InvalidCursorError, StoreClosedError
from digitrec.records.record import PredictionRecord
from digitrec.records.spool import SpooledStore
from digitrec.records.sqlite_store import SQLiteStore
from digitrec.records.store import RecordStore

HAVE_CASSANDRA = bool(os.environ.get("CASSANDRA_CONTACT_POINTS", "").strip())
NO_CASSANDRA = "CASSANDRA_CONTACT_POINTS is not set: no Cassandra server to test against"
NEEDS_CASSANDRA = pytest.mark.skipif(not HAVE_CASSANDRA, reason=NO_CASSANDRA)
_tables = itertools.count()


@pytest.fixture(scope="module")
def cassandra_keyspace():
    """A keyspace for this test run, dropped at the end (even when tests fail)."""
    from digitrec.records.cassandra_store import cassandraModule

    admin = cassandraModule(config=cassandra_env_config(new_keyspace_name()))
    admin.create_keyspace()
    yield admin.keyspace
    admin.drop_keyspace()
    admin.close()


def _open(kind: str, tmp_path, request) -> RecordStore:
    engine, _, wrapped = kind.partition("+")
    if engine == "sqlite":
        primary: RecordStore = SQLiteStore(tmp_path / "records.sqlite3")
    else:
        from digitrec.records.cassandra_store import cassandraModule

        keyspace = request.getfixturevalue("cassandra_keyspace")
        primary = cassandraModule(config=cassandra_env_config(keyspace, table=f"t{next(_tables)}"))
        primary.init_schema()
    if wrapped:
        return SpooledStore(primary, tmp_path / "spool.sqlite3", retry_min=0.05)
    return primary


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite+spool",
        pytest.param("cassandra", marks=[pytest.mark.cassandra, NEEDS_CASSANDRA]),
        pytest.param("cassandra+spool", marks=[pytest.mark.cassandra, NEEDS_CASSANDRA]),
    ]
)
def store(request, tmp_path):
    opened = _open(request.param, tmp_path, request)
    yield opened
    opened.close()


def _ids(records: list[PredictionRecord]) -> list[uuid.UUID]:
    return [r.request_id for r in records]


def test_add_then_get_returns_an_equal_record(store):
    record = make_record(7)
    bare = dataclasses.replace(make_record(3, file_name=None), image_path=None, image_sha256=None)
    store.add(record)
    store.add(bare)
    assert store.get(record.request_id) == record
    assert store.get(bare.request_id) == bare


def test_get_unknown_id_is_none(store):
    store.add(make_record(1))
    assert store.get(uuid.uuid1()) is None


def test_writing_the_same_request_id_twice_keeps_one_record(store):
    record = make_record(4)
    store.add(record)
    store.add(record)
    store.add_many([record, record])
    assert _ids(store.by_day(record.day)) == [record.request_id]


def test_latest_pages_back_through_days_newest_first(store):
    written = []
    for day in (0, 1, 3):  # day 2 is empty on purpose
        batch = [make_record(i, when=days_ago(day, hour=1 + i)) for i in range(7)]
        store.add_many(batch)
        written += batch
    expected = sorted(written, key=lambda r: (r.day, r.request_id.time), reverse=True)

    pages, cursor = [], None
    for _ in range(10):  # bounded: 21 records in pages of 4 need 6 pages
        page = store.latest(4, cursor)
        pages.append(page.records)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 1]
    assert _ids([r for p in pages for r in p]) == _ids(expected)


def test_latest_without_more_records_has_no_cursor(store):
    records = [make_record(i) for i in range(3)]
    store.add_many(records)
    page = store.latest(3)
    assert _ids(page.records) == _ids(records[::-1])
    assert page.next_cursor is None
    assert store.latest(10).next_cursor is None


def test_latest_rejects_a_forged_cursor(store):
    store.add(make_record(1))
    with pytest.raises(InvalidCursorError):
        store.latest(5, "not-a-cursor")
    with pytest.raises(ValueError):
        store.latest(0)


def test_by_day_returns_only_that_day_newest_first(store):
    today = [make_record(i) for i in range(3)]
    yesterday = [make_record(i, when=days_ago(1)) for i in range(2)]
    store.add_many(yesterday + today)
    assert _ids(store.by_day(today[0].day)) == _ids(today[::-1])
    assert _ids(store.by_day(yesterday[0].day)) == _ids(yesterday[::-1])
    assert store.by_day(days_ago(40).date()) == []


def test_set_correction_is_stored_and_unknown_ids_report_false(store):
    record = make_record(5)
    store.add(record)
    assert store.set_correction(record.request_id, 8) is True
    assert store.get(record.request_id).corrected_label == 8
    assert store.set_correction(uuid.uuid1(), 2) is False
    with pytest.raises(ValueError):
        store.set_correction(record.request_id, 12)
    assert store.set_correction(record.request_id, None) is True
    assert store.get(record.request_id).corrected_label is None


def test_rewriting_a_record_keeps_its_correction(store):
    record = make_record(2)
    store.add(record)
    store.set_correction(record.request_id, 6)
    store.add(record)  # what a spool replay does after a timeout that had in fact succeeded
    assert store.get(record.request_id).corrected_label == 6


def test_a_non_time_based_request_id_is_refused(store):
    record = dataclasses.replace(make_record(1), request_id=uuid.uuid4())
    with pytest.raises(ValueError, match="version 1"):
        store.add(record)
    assert store.latest(5).records == []


def test_health_reports_the_engine(store):
    health = store.health()
    assert health.ok, health.detail
    assert health.engine in ("sqlite", "cassandra")
    assert health.spool_depth == 0


def test_close_twice_is_safe_and_use_after_close_fails(store):
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.add(make_record(1))


def test_a_thousand_records_from_eight_threads_in_one_millisecond_are_all_kept(store):
    """The seed keyed records by time and lost all but one per second; here every request is its own row."""
    instant = dt.datetime.now(dt.timezone.utc).replace(microsecond=123000)
    per_thread = 125
    made: list[list[PredictionRecord]] = [[] for _ in range(8)]

    def write(n: int) -> None:
        for i in range(per_thread):
            record = make_record(i, when=instant)
            made[n].append(record)
            store.add(record)

    run_writers(write)
    stored = store.by_day(instant.date())
    assert len(stored) == 1000
    assert {r.request_id for r in stored} == {r.request_id for batch in made for r in batch}
    assert {r.request_time for r in stored} == {instant}


# ---------------------------------------------------------------------- images with their records


def test_an_image_written_with_its_record_is_read_back_byte_for_byte(store):
    image = image_bytes(20_000, seed=1)
    record = with_image(make_record(7), image)
    plain = make_record(2)
    store.add(record, image)
    store.add(plain)
    assert store.get(record.request_id) == record
    assert store.get_image(record.request_id) == image
    assert store.has_image(record.request_id) is True
    assert store.get_image(plain.request_id) is None and store.has_image(plain.request_id) is False
    assert store.get_image(uuid.uuid1()) is None
    assert store.get_image(uuid.uuid4()) is None


def test_an_image_larger_than_one_cell_is_chunked_and_reassembled(store):
    image = image_bytes(3 * 256 * 1024 + 123, seed=2)  # four cells in Cassandra
    record = with_image(make_record(1), image)
    store.add(record, image)
    assert store.get_image(record.request_id) == image


def test_add_many_stores_each_image_with_its_own_record(store):
    images = {i: image_bytes(1000 + i, seed=i) for i in range(0, 6, 2)}
    records = [with_image(make_record(i), images[i]) if i in images else make_record(i) for i in range(6)]
    store.add_many(records, {records[i].request_id: data for i, data in images.items()})
    for i, record in enumerate(records):
        assert store.get(record.request_id) == record
        assert store.get_image(record.request_id) == images.get(i)


def test_rewriting_a_record_with_its_image_keeps_one_image_and_the_correction(store):
    image = image_bytes(5000, seed=3)
    record = with_image(make_record(3), image)
    store.add(record, image)
    store.set_correction(record.request_id, 9)
    store.add(record, image)  # a spool replay after a write that had in fact succeeded
    store.add_many([record], {record.request_id: image})
    assert store.get_image(record.request_id) == image
    assert store.get(record.request_id).corrected_label == 9
    assert _ids(store.by_day(record.day)) == [record.request_id]


def test_an_image_that_is_not_the_records_is_refused_and_nothing_is_written(store):
    image = image_bytes(3000, seed=4)
    record = with_image(make_record(4), image)
    with pytest.raises(ValueError, match="image_sha256"):
        store.add(record, image_bytes(3000, seed=5))
    with pytest.raises(ValueError, match="empty"):
        store.add(record, b"")
    with pytest.raises(TypeError, match="bytes"):
        store.add(record, "not bytes")
    with pytest.raises(ValueError, match="not among the records"):
        store.add_many([make_record(1)], {record.request_id: image})
    assert store.get(record.request_id) is None and store.get_image(record.request_id) is None


def test_add_image_attaches_an_image_to_an_older_record_idempotently(store):
    image = image_bytes(4096, seed=6)
    record = with_image(make_record(6), image)
    store.add(record)  # written before images travelled with their record
    assert store.get_image(record.request_id) is None
    assert store.add_image(record, image) is True
    assert store.add_image(record, image) is True
    assert store.get_image(record.request_id) == image
    with pytest.raises(ValueError, match="image_sha256"):
        store.add_image(record, image_bytes(4096, seed=7))


def test_images_from_eight_threads_all_land_with_their_records(store):
    made: list[list[tuple[PredictionRecord, bytes]]] = [[] for _ in range(8)]

    def write(n: int) -> None:
        for i in range(25):
            image = image_bytes(2000 + i, seed=n * 100 + i)
            record = with_image(make_record(i), image)
            made[n].append((record, image))
            store.add(record, image)

    run_writers(write)
    pairs = [pair for batch in made for pair in batch]
    assert [store.get_image(r.request_id) == image for r, image in pairs] == [True] * 200


@pytest.mark.cassandra
@NEEDS_CASSANDRA
def test_cassandra_image_cells_are_at_most_256_kb_and_share_the_records_ttl(cassandra_keyspace):
    from digitrec.records.cassandra_store import IMAGE_CHUNK_BYTES, cassandraModule

    config = dataclasses.replace(cassandra_env_config(cassandra_keyspace, table=f"t{next(_tables)}"), ttl_seconds=86400)
    with cassandraModule(config=config) as cas:
        cas.init_schema()
        image = image_bytes(600_000, seed=8)
        record = with_image(make_record(8), image)
        cas.add(record, image)
        rows = list(
            cas.session.execute(
                f"SELECT chunk, data, TTL(data) AS data_ttl "
                f"FROM {config.keyspace}.{config.table}_image WHERE request_id = %s",
                (record.request_id,),
            )
        )
        assert [r["chunk"] for r in rows] == [0, 1, 2]
        assert max(len(r["data"]) for r in rows) == IMAGE_CHUNK_BYTES == 256 * 1024
        record_ttl = cas.session.execute(
            f"SELECT TTL(label) AS label_ttl FROM {config.keyspace}.{config.table} WHERE day = %s AND request_id = %s",
            (record.day, record.request_id),
        ).one()["label_ttl"]
        assert all(abs(r["data_ttl"] - record_ttl) <= 5 for r in rows) and 86000 < record_ttl <= 86400
        # a migrated image lives only as long as what is left of its record's lifetime
        old = with_image(make_record(1, when=days_ago(3)), image)
        cas.add(old)
        assert cas.add_image(old, image) is False  # three days old with a one-day TTL: nothing to attach to


# ---------------------------------------------------------------------- seed 002 compatibility


@pytest.fixture
def local_zone(monkeypatch):
    """Run with the machine's local time set to Europe/Berlin (UTC+2 in September, +1 in November)."""
    import time

    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available on this platform")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_legacy_record_defaults(local_zone):
    from digitrec.records.cassandra_store import legacy_record

    record = legacy_record("seven.png", "2026-11-21 10:15:30.123456", 7)
    assert (record.source, record.model_name, record.label, record.class_name) == ("legacy", "digits", 7, "7")
    assert record.file_name == "seven.png"
    # no zone: the machine's local time (Berlin, UTC+1 in November), kept to the millisecond
    assert record.request_time == dt.datetime(2026, 11, 21, 9, 15, 30, 123000, tzinfo=dt.timezone.utc)
    assert record.confidence == 0.0 and record.probabilities == (0.0,) * 10
    assert record.request_id.version == 1
    assert legacy_record(None, 1_700_000_000, "3").request_time.year == 2023
    with pytest.raises(ValueError, match="digit"):
        legacy_record("x.png", "2026-11-21", 10)
    with pytest.raises(ValueError, match="not a date and time"):
        legacy_record("x.png", "yesterday", 1)


def test_legacy_time_accepts_what_the_seeds_wrote_as_local_time(local_zone):
    """Seed 002: ``insertRecord(name, datetime.now().strftime('%Y-%m-%d, %H:%M'), label)``."""
    from digitrec.records.cassandra_store import legacy_record

    utc = dt.timezone.utc
    now = dt.datetime.now().replace(second=0, microsecond=0)
    seed_text = now.strftime("%Y-%m-%d, %H:%M")
    assert legacy_record("a.png", seed_text, 3).request_time == now.astimezone(utc)
    summer = dt.datetime(2019, 9, 24, 7, 14, tzinfo=utc)  # 09:14 in Berlin (summer time, UTC+2)
    for text in (
        "2019-09-24, 09:14",
        "2019-09-24 09:14",
        "2019-09-24T09:14:00",
        "2019/09/24 09:14",
        "24.09.2019 09:14",
        "Tue Sep 24 09:14:00 2019",  # time.ctime()
        "2019-09-24 07:14:00+00:00",  # a zone given is respected
        dt.datetime(2019, 9, 24, 9, 14),  # naive datetime: local as well
    ):
        assert legacy_record("a.png", text, 3).request_time == summer, text
    for ambiguous in ("09/24/2019 09:14", "24/09/2019 09:14", "09:14"):
        with pytest.raises(ValueError, match="not a date and time"):
            legacy_record("a.png", ambiguous, 3)


def test_constructing_cassandra_module_does_not_connect_and_failure_names_the_address():
    """Port 1 on 127.0.0.1 refuses connections: a real failure, no mock."""
    from digitrec.records.cassandra_store import cassandraModule
    from digitrec.records.exceptions import StoreUnavailableError

    cas = cassandraModule(cluster_IP=["127.0.0.1"], cluster_port=1, connect_timeout=2.0)
    assert cas.config.contact_points == ("127.0.0.1",) and cas.config.port == 1
    with pytest.raises(StoreUnavailableError, match="127.0.0.1:1"):
        cas.createKeySpace("digitrecognition")
    assert cas.health().ok is False
    cas.close()


def test_cassandra_module_without_contact_points_is_a_configuration_error(monkeypatch):
    from digitrec.errors import ConfigurationError
    from digitrec.records.cassandra_store import cassandraModule

    monkeypatch.delenv("CASSANDRA_CONTACT_POINTS", raising=False)
    with pytest.raises(ConfigurationError, match="contact points"):
        cassandraModule()


@pytest.mark.cassandra
@NEEDS_CASSANDRA
def test_seed_aliases_work_against_cassandra(cassandra_keyspace):
    from digitrec.records.cassandra_store import cassandraModule

    config = RecordsConfig.from_env()
    cas = cassandraModule(
        cluster_IP=list(config.contact_points), cluster_port=config.port, table=f"t{next(_tables)}", consistency="ONE"
    )
    try:
        cas.createKeySpace(cassandra_keyspace)
        cas.creatDRTable()
        ids = [cas.insertRecord(f"{d}.png", "2026-11-21 10:15:30", d) for d in range(10)]
        ids.append(cas.insertRecord("same-second.png", "2026-11-21 10:15:30", 4))
        stored = cas.by_day(dt.date(2026, 11, 21))
        assert {r.request_id for r in stored} == set(ids)  # same second, all kept
        assert cas.get(ids[7]).label == 7 and cas.get(ids[7]).source == "legacy"
    finally:
        cas.close()
