"""Readings as records: one record per image of a row of digits, in every store, with the upgrade of old stores.

The store contract runs on SQLite (alone and behind the spool) always, and on Cassandra whenever
CASSANDRA_CONTACT_POINTS is set (the fixtures come from test_records_contract).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import sqlite3
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from records_helpers import cassandra_env_config, make_record
from test_records_contract import (
    NEEDS_CASSANDRA,
    _open,
    cassandra_keyspace,  # noqa: F401 (a fixture _open asks for)
)

from digitrec.records.codec import record_from_json, record_to_json
from digitrec.records.query import RecordFilter, StatsWindow
from digitrec.records.record import Mark, PredictionRecord
from digitrec.records.spool import Spool, SpooledStore
from digitrec.records.sqlite_store import SQLiteStore, _missing_indexes

OLD_SQLITE_SCHEMA = Path(__file__).with_name("records_schema_before_readings.sql")


def prediction(label: int, box: tuple[int, int, int, int], confidence: float = 0.97, in_domain: bool = True):
    """What the recognizer's ``read`` returns per mark (only the attributes a record takes)."""
    probabilities = [0.003] * 10
    probabilities[label] = confidence
    return SimpleNamespace(
        label=label,
        name=str(label),
        confidence=confidence,
        probabilities=probabilities,
        box=box,
        in_domain=in_domain,
        domain_score=4.0 if in_domain else -2.5,
    )


def make_reading(text: str = "2026", refused: int = 0, **fields) -> PredictionRecord:
    digits = [prediction(int(c) if c.isdigit() else 0, (10 + 30 * i, 8, 22, 40)) for i, c in enumerate(text)]
    marks = [prediction(4, (200 + 30 * i, 5, 25, 44), 0.6, in_domain=False) for i in range(refused)]
    reading = SimpleNamespace(text=text, digits=digits, refused=marks, confidence=0.91)
    record = PredictionRecord.from_reading(
        reading,
        model_name="digits",
        model_version="test-1",
        source="canvas",
        file_name="number.png",
        image_sha256="ab" * 32,
        processing_ms=7.5,
    )
    return dataclasses.replace(record, **fields) if fields else record


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite+spool",
        pytest.param("cassandra", marks=[pytest.mark.cassandra, NEEDS_CASSANDRA]),
        pytest.param("cassandra+spool", marks=[pytest.mark.cassandra, NEEDS_CASSANDRA]),
    ]
)
def store(request, tmp_path):
    """The contract's stores: each engine alone and behind the spool."""
    opened = _open(request.param, tmp_path, request)
    yield opened
    opened.close()


def _all(store, where: RecordFilter) -> list[PredictionRecord]:
    found, cursor = [], None
    while True:
        page = store.find(where, limit=3, cursor=cursor)
        found += page.records
        cursor = page.next_cursor
        if not cursor:
            return found


# ---------------------------------------------------------------- the record type


def test_a_reading_is_one_record_with_its_text_marks_and_refusal():
    record = make_reading("42", refused=1)
    assert record.kind == "reading" and record.is_reading
    assert record.text == "42"
    assert [m.label for m in record.digits] == [4, 2]
    assert record.digits[1].box == (40, 8, 22, 40)
    assert record.refused[0].in_domain is False and record.refused[0].box == (200, 5, 25, 44)
    assert record.in_domain is False and record.is_refused
    assert record.label == 4 and record.confidence == 0.91  # first digit's class, whole reading's confidence
    assert record.domain_score == -2.5  # the least digit-like mark
    assert make_reading("42").in_domain is True
    data = record.to_json()
    assert data["digits"][0] == {
        "label": 4,
        "confidence": 0.97,
        "box": {"x": 10, "y": 8, "width": 22, "height": 40},
        "in_domain": True,
        "domain_score": 4.0,
    }
    assert record_from_json(record_to_json(record)) == record


def test_one_digit_records_are_unchanged():
    record = make_record(3)
    assert (record.kind, record.text, record.digits, record.refused) == ("digit", None, (), ())
    assert record.in_domain is None and record.corrected_text is None and not record.is_refused
    with pytest.raises(ValueError, match="reading records"):
        dataclasses.replace(record, text="3")


def test_reading_fields_are_checked():
    with pytest.raises(ValueError, match="digits 0-9 only"):
        make_reading(text="20a6")
    with pytest.raises(ValueError, match="box"):
        Mark(label=1, confidence=0.9, box=(1, 2, 3))
    with pytest.raises(ValueError, match="no mark"):
        PredictionRecord.from_reading(
            SimpleNamespace(text="", digits=[], refused=[], confidence=0.0),
            model_name="digits",
            model_version="1",
            source="api",
        )
    with pytest.raises(ValueError, match="corrected by its text"):
        make_reading(corrected_label=3)


def test_a_spooled_record_from_before_readings_still_reads(tmp_path):
    """Spool payloads written by the previous version lack the new keys: they read as one-digit records."""
    record = make_record(5)
    old = json.loads(record_to_json(record))
    for key in ("kind", "text", "digits", "refused", "in_domain", "domain_score", "corrected_text"):
        del old[key]
    assert record_from_json(json.dumps(old)) == record
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.close()
    conn = sqlite3.connect(tmp_path / "spool.sqlite3")
    conn.execute(
        "INSERT INTO spool (request_id, payload, spooled_at) VALUES (?, ?, 0)",
        (str(record.request_id), json.dumps(old)),
    )
    conn.commit()
    conn.close()
    primary = SQLiteStore(tmp_path / "records.sqlite3")
    with SpooledStore(primary, tmp_path / "spool.sqlite3", retry_min=0.05) as spooled:
        assert spooled.wait_drained(10.0)
        assert primary.get(record.request_id) == record


# ---------------------------------------------------------------- every store


def test_a_reading_round_trips_through_every_store(store):
    reading = make_reading("2026", refused=1)
    digit = dataclasses.replace(make_record(7), in_domain=True, domain_score=3.25)
    store.add_many([reading, digit])
    assert store.get(reading.request_id) == reading
    assert store.get(digit.request_id) == digit
    assert {r.request_id for r in store.latest(10).records} == {reading.request_id, digit.request_id}
    assert reading in store.by_day(reading.day)


def test_a_reading_is_corrected_by_its_text(store):
    reading, digit = make_reading("2026"), make_record(1)
    store.add_many([reading, digit])
    assert store.set_correction(reading.request_id, "2028") is True
    assert store.get(reading.request_id).corrected_text == "2028"
    assert store.get(reading.request_id).correction == "2028"
    for bad in ("", "20 26", "twenty", "2O26"):
        with pytest.raises(ValueError, match="digits 0-9"):
            store.set_correction(reading.request_id, bad)
    with pytest.raises(ValueError, match="is a reading"):
        store.set_correction(reading.request_id, 2)
    with pytest.raises(ValueError, match="is one digit"):
        store.set_correction(digit.request_id, "1")
    assert store.get(reading.request_id).corrected_text == "2028"  # refused corrections changed nothing
    store.add(reading)  # a replay of the same reading keeps the correction made meanwhile
    assert store.get(reading.request_id).corrected_text == "2028"
    assert store.set_correction(digit.request_id, 4) is True  # one-digit records as before
    assert store.get(digit.request_id).corrected_label == 4
    assert store.set_correction(uuid.uuid1(), "12") is False
    corrected = _all(store, RecordFilter(corrected=True))
    assert {r.request_id for r in corrected} == {reading.request_id, digit.request_id}
    assert store.set_correction(reading.request_id, None) is True
    assert store.get(reading.request_id).corrected_text is None


def test_the_refused_filter(store):
    plain = make_reading("31")
    with_mark = make_reading("7", refused=2)
    out_of_domain = dataclasses.replace(make_record(4), in_domain=False, domain_score=-3.0)
    judged_fine = dataclasses.replace(make_record(5), in_domain=True)
    unjudged = make_record(6)
    store.add_many([plain, with_mark, out_of_domain, judged_fine, unjudged])
    refused = _all(store, RecordFilter(refused=True))
    assert {r.request_id for r in refused} == {with_mark.request_id, out_of_domain.request_id}
    assert [r.request_id for r in _all(store, RecordFilter(refused=True, label=4))] == [out_of_domain.request_id]
    assert RecordFilter(refused=True).to_params() == {"refused": "1"}
    stats = store.summarize(StatsWindow.last_days("digits", 2))
    assert (stats.total.count, stats.readings, stats.refused) == (5, 2, 2)


def test_dashboard_tallies_count_a_reading_corrected_to_other_digits_as_wrong(store):
    right, wrong = make_reading("12"), make_reading("34")
    store.add_many([right, wrong])
    store.set_correction(right.request_id, "12")
    store.set_correction(wrong.request_id, "39")
    stats = store.summarize(StatsWindow.last_days("digits", 2))
    total = stats.total
    assert (total.count, total.corrected, total.wrong) == (2, 2, 1)
    assert stats.confusion == {}  # the confusion matrix is of one-digit corrections


# ---------------------------------------------------------------- upgrades of existing stores


def test_a_records_file_of_the_previous_schema_upgrades_at_open(tmp_path):
    path = tmp_path / "records.sqlite3"
    old = [make_record(i) for i in range(4)]
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SQLITE_SCHEMA.read_text())
    from digitrec.records.codec import timeuuid_sort_key

    for i, r in enumerate(old):
        conn.execute(
            "INSERT INTO dr_request_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(r.request_id),
                r.day.isoformat(),
                timeuuid_sort_key(r.request_id),
                r.request_time.isoformat(timespec="milliseconds"),
                r.model_name,
                r.model_version,
                r.label,
                r.class_name,
                r.confidence,
                json.dumps(list(r.probabilities)),
                r.source,
                r.file_name,
                r.image_path,
                r.image_sha256,
                r.processing_ms,
                (r.label + 1) % 10 if i == 0 else None,
            ),
        )
    conn.commit()
    conn.close()
    old[0] = old[0].with_correction((old[0].label + 1) % 10)
    reading = make_reading("90", refused=1)
    for _ in range(2):  # the upgrade happens once; opening again changes nothing
        with SQLiteStore(path) as opened:
            for r in old:
                assert opened.get(r.request_id) == r
            opened.add(reading)
            assert opened.set_correction(reading.request_id, "99")
            assert [r.request_id for r in _all(opened, RecordFilter(refused=True))] == [reading.request_id]
            total = opened.summarize(StatsWindow.last_days("digits", 2)).total
            assert (total.count, total.corrected, total.wrong) == (5, 2, 2)
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(dr_request_log)")}
    assert {"kind", "text", "digits", "refused", "in_domain", "domain_score", "corrected_text"} <= columns
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "dr_filter_corrected" not in names and {"dr_filter_corrections", "dr_filter_refused"} <= names
    # the model index of the old file was rebuilt to carry text corrections (the dashboard's review scan)
    model_index = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'dr_filter_model'").fetchone()[0]
    assert "corrected_text" in model_index
    assert _missing_indexes(conn) == []
    conn.close()


OLD_CASSANDRA_TABLE = """CREATE TABLE {ks}.{table} (
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
    PRIMARY KEY ((day), request_id)
) WITH CLUSTERING ORDER BY (request_id DESC)"""


@pytest.mark.cassandra
@NEEDS_CASSANDRA
def test_a_cassandra_table_of_the_previous_schema_gets_the_new_columns(request):
    from digitrec.records.cassandra_store import ADDED_COLUMNS, cassandraModule

    keyspace = request.getfixturevalue("cassandra_keyspace")
    config = cassandra_env_config(keyspace, table=f"old_{uuid.uuid4().hex[:8]}")
    old_store = cassandraModule(config=config)
    old_store.init_schema()
    old_store._ddl(f"DROP TABLE {config.keyspace}.{config.table}")
    old_store._ddl(OLD_CASSANDRA_TABLE.format(ks=config.keyspace, table=config.table))
    old = make_record(2)
    old_store.session.execute(
        f"INSERT INTO {config.keyspace}.{config.table} (day, request_id, request_time, model_name, model_version, "
        "label, class_name, confidence, probabilities, source, file_name, image_path, image_sha256, processing_ms) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            old.day,
            old.request_id,
            old.request_time,
            old.model_name,
            old.model_version,
            old.label,
            old.class_name,
            old.confidence,
            list(old.probabilities),
            old.source,
            old.file_name,
            old.image_path,
            old.image_sha256,
            old.processing_ms,
        ),
    )
    old_store.session.execute(
        f"INSERT INTO {config.keyspace}.{config.table}_by_id (request_id, day) VALUES (%s, %s)",
        (old.request_id, old.day),
    )
    old_store.close()
    reading = make_reading("58", refused=1)
    for _ in range(2):  # a second process finds the columns there and changes nothing
        with cassandraModule(config=config) as upgraded:
            assert upgraded.get(old.request_id) == old
            upgraded.add(reading)  # the second time a replay, which keeps the correction
            assert upgraded.set_correction(reading.request_id, "59")
            assert upgraded.get(reading.request_id) == reading.with_correction("59")
            assert upgraded.upgrade_table() == []  # idempotent: nothing left to add
    with cassandraModule(config=config) as again:
        assert set(dict(ADDED_COLUMNS)) <= again._table_columns()
        assert again.get(reading.request_id).corrected_text == "59"


@pytest.mark.cassandra
@NEEDS_CASSANDRA
def test_init_db_on_a_new_cassandra_table_runs_no_alter(request):
    from digitrec.records.cassandra_store import cassandraModule

    keyspace = request.getfixturevalue("cassandra_keyspace")
    with cassandraModule(config=cassandra_env_config(keyspace, table=f"t_{uuid.uuid4().hex[:8]}")) as s:
        first = s.init_schema()
        assert not any(stmt.startswith("ALTER") for stmt in first)  # a new table has every column
        assert s.init_schema() == first


# ---------------------------------------------------------------- CLI and docs


def test_records_list_refused_and_the_csv_of_a_reading(tmp_path):
    from test_records_cli import run_cli

    reading, refused = make_reading("2026"), make_reading("7", refused=1)
    out_of_domain = dataclasses.replace(make_record(4), in_domain=False)
    with SQLiteStore(tmp_path / "records.sqlite3") as opened:
        opened.add_many([reading, refused, out_of_domain, make_record(5)])
        opened.set_correction(reading.request_id, "2028")
    listed = run_cli("list", "--refused", "--data-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == 2
    assert str(out_of_domain.request_id) in rows[0] and "4 (refused)" in rows[0]
    assert str(refused.request_id) in rows[1] and '"7" +1 refused' in rows[1]
    table = run_cli("list", "--data-dir", str(tmp_path)).stdout
    assert '"2026"' in table and "2028" in table  # a reading's text and its correction
    out = tmp_path / "export.csv"
    assert run_cli("export", "--csv", str(out), "--data-dir", str(tmp_path)).returncode == 0
    with out.open(newline="") as handle:
        by_id = {row["request_id"]: row for row in csv.DictReader(handle)}
    row = by_id[str(reading.request_id)]
    assert (row["kind"], row["text"], row["corrected_text"]) == ("reading", "2026", "2028")
    assert [d["label"] for d in json.loads(row["digits"])] == [2, 0, 2, 6]
    assert by_id[str(out_of_domain.request_id)]["digits"] == ""


def test_the_cql_in_docs_records_md_is_what_init_db_runs():
    from digitrec.records.cassandra_store import ADDED_COLUMNS, add_column_cql, schema_cql
    from digitrec.records.config import RecordsConfig

    config = RecordsConfig.from_env({})
    docs = (Path(__file__).resolve().parents[1] / "docs" / "records.md").read_text()

    def words(text: str) -> str:
        return " ".join(text.split())

    blocks = [words(b) for b in re.findall(r"```sql\n(.*?)```", docs, re.S)]
    documented = " ".join(blocks)
    for statement in schema_cql(config)[1:3]:
        assert words(statement) + ";" in documented
    for name, cql_type in ADDED_COLUMNS:
        assert words(add_column_cql(config, name, cql_type)) + ";" in documented
