"""Record filters and dashboard aggregates, on every store of the contract (SQLite, and Cassandra when
CASSANDRA_CONTACT_POINTS is set, each also behind the spool): the engines must agree with a plain
Python reading of the same records."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3

import pytest
import test_records_contract as contract
from records_helpers import days_ago, make_record

from digitrec.records.exceptions import InvalidCursorError
from digitrec.records.query import RecordFilter, StatsWindow
from digitrec.records.record import PredictionRecord
from digitrec.records.sqlite_store import _UPSERT, CORRECTED, SCHEMA, SQLiteStore, _row
from digitrec.records.stats import confidence_bin

store = contract.store  # the contract's fixtures: every engine, bare and behind the spool
cassandra_keyspace = contract.cassandra_keyspace


def _variety() -> list[PredictionRecord]:
    """Three days, two models, three versions, all labels, spread confidences, some corrections."""
    records = []
    n = 0
    for day in (0, 1, 3):
        for i in range(14):
            n += 1
            model = "fashion" if i % 5 == 4 else "digits"
            version = {0: "v2", 1: "v1", 3: "v1"}[day] if model == "digits" else "f1"
            if model == "digits" and day == 0 and i % 7 == 3:
                version = "v3-canary"
            record = dataclasses.replace(
                make_record(n, when=days_ago(day, hour=1 + i)),
                model_name=model,
                model_version=version,
                label=(n * 3) % 10,
                confidence=round(0.2 + (n * 37 % 80) / 100, 3),
            )
            if i % 4 == 1:
                record = record.with_correction((record.label + (n % 3)) % 10)  # some right, most wrong
            records.append(record)
    return records


def _newest_first(records: list[PredictionRecord]) -> list[PredictionRecord]:
    return sorted(records, key=lambda r: (r.day, r.request_id.time), reverse=True)


def _read_all(store, where: RecordFilter, limit: int) -> list[PredictionRecord]:
    found, cursor = [], None
    for _ in range(200):
        page = store.find(where, limit, cursor)
        assert len(page.records) <= limit
        found += page.records
        cursor = page.next_cursor
        if cursor is None:
            return found
    raise AssertionError("paging did not end")


FILTERS = [
    RecordFilter(),
    RecordFilter(model="fashion"),
    RecordFilter(model="digits", version="v1"),
    RecordFilter(version="v3-canary"),
    RecordFilter(label=3),
    RecordFilter(corrected=True),
    RecordFilter(confidence_below=0.5),
    RecordFilter(day=days_ago(1).date()),
    RecordFilter(model="digits", corrected=True, confidence_below=0.8),
    RecordFilter(day=days_ago(0).date(), model="digits", label=9),
    RecordFilter(model="nobody"),
]


def test_every_filter_pages_through_exactly_the_matching_records_newest_first(store):
    records = _variety()
    store.add_many(records)
    for where in FILTERS:
        expected = _newest_first([r for r in records if where.matches(r)])
        got = _read_all(store, where, limit=4)
        assert [r.request_id for r in got] == [r.request_id for r in expected], where
        assert all(where.matches(r) for r in got)
    assert len(_read_all(store, RecordFilter(corrected=True), 100)) == sum(
        r.corrected_label is not None for r in records
    )


def test_find_of_a_full_page_has_a_cursor_and_a_forged_cursor_is_refused(store):
    records = _variety()
    store.add_many(records)
    page = store.find(RecordFilter(model="digits"), 3)
    assert len(page.records) == 3 and page.next_cursor is not None
    # a cursor from another day: a newer one leaves the whole asked-for day to read, an older one nothing
    yesterday = days_ago(1).date()
    whole_day = _newest_first([r for r in records if r.day == yesterday])
    newer = store.find(RecordFilter(day=days_ago(0).date()), 1).next_cursor
    older = store.find(RecordFilter(day=days_ago(3).date()), 1).next_cursor
    assert [r.request_id for r in store.find(RecordFilter(day=yesterday), 100, newer).records] == [
        r.request_id for r in whole_day
    ]
    assert store.find(RecordFilter(day=yesterday), 100, older).records == []
    with pytest.raises(InvalidCursorError):
        store.find(RecordFilter(model="digits"), 3, "forged")
    with pytest.raises(ValueError):
        store.find(RecordFilter(model="digits"), 0)


def test_a_correction_moves_a_record_into_the_corrected_filter(store):
    record = make_record(4)
    store.add(record)
    assert store.find(RecordFilter(corrected=True)).records == []
    store.set_correction(record.request_id, 9)
    assert [r.corrected_label for r in store.find(RecordFilter(corrected=True)).records] == [9]


def test_summarize_agrees_with_a_python_reading_of_the_records(store):
    records = _variety()
    store.add_many(records)
    for window in (
        StatsWindow.last_days("digits", 7),
        StatsWindow.last_days("digits", 2),
        StatsWindow.last_days("digits", 7, version="v1"),
        StatsWindow.last_days("fashion", 1),
    ):
        mine = [r for r in records if window.contains(r)]
        stats = store.summarize(window)
        total = stats.total
        assert total.count == len(mine) > 0
        assert total.corrected == sum(r.corrected_label is not None for r in mine)
        assert total.wrong == sum(r.corrected_label not in (None, r.label) for r in mine)
        hours: dict = {}
        for r in mine:
            key = (r.request_time.strftime("%Y-%m-%dT%H"), r.model_version)
            hours[key] = hours.get(key, 0) + 1
        assert {k: t.count for k, t in stats.hourly.items()} == hours
        bins = [0] * 20
        for r in mine:
            bins[confidence_bin(r.confidence)] += 1
        assert [t.count for t in stats.histogram] == bins
        confusion: dict = {}
        for r in mine:
            if r.corrected_label is not None:
                confusion[(r.label, r.corrected_label)] = confusion.get((r.label, r.corrected_label), 0) + 1
        assert stats.confusion == confusion
        assert {v: s.tally.count for v, s in stats.versions.items()} == {
            v: sum(r.model_version == v for r in mine) for v in {r.model_version for r in mine}
        }
        for version, span in stats.versions.items():
            times = [r.request_time for r in mine if r.model_version == version]
            assert dt.datetime.fromisoformat(span.first) == min(times)
            assert dt.datetime.fromisoformat(span.last) == max(times)
        review = sorted((r for r in mine if r.corrected_label is None), key=lambda r: r.confidence)
        assert [r.request_id for r in stats.review] == [r.request_id for r in review[:12]]
        assert not stats.truncated


def test_summarize_follows_corrections_removed_corrections_and_replays(store):
    records = [make_record(i) for i in range(6)]
    store.add_many(records)
    store.set_correction(records[0].request_id, (records[0].label + 1) % 10)
    store.set_correction(records[1].request_id, records[1].label)
    store.set_correction(records[2].request_id, 5)
    store.set_correction(records[2].request_id, None)  # taken back
    store.add_many(records)  # a spool replay of the same ids keeps the corrections and counts nothing twice
    total = store.summarize(StatsWindow.last_days("digits", 1)).total
    assert (total.count, total.corrected, total.wrong) == (6, 2, 1)


def test_review_lists_the_twelve_least_confident_uncorrected(store):
    confidences = [0.05 + 0.03 * i for i in range(15)] + [0.93, 0.97]  # 15 of them below 0.5
    records = [dataclasses.replace(make_record(i), confidence=c) for i, c in enumerate(confidences)]
    store.add_many(records)
    store.set_correction(records[0].request_id, 3)  # reviewed already: not listed
    review = store.summarize(StatsWindow.last_days("digits", 1)).review
    assert [r.request_id for r in review] == [r.request_id for r in records[1:13]]


def test_summarize_of_an_empty_window_is_empty(store):
    store.add(make_record(1, when=days_ago(30)))
    stats = store.summarize(StatsWindow.last_days("digits", 7))
    assert stats.total.count == 0 and stats.confusion == {} and stats.review == []


@pytest.mark.cassandra
def test_cassandra_find_stops_at_its_scan_bound_and_its_cursor_goes_on(store):
    if store.engine != "cassandra":
        pytest.skip("the scan bound belongs to the Cassandra adapter")
    records = _variety()
    store.add_many(records)
    primary = getattr(store, "primary", store)
    primary.find_scan_bound, primary.find_chunk = 5, 2
    where = RecordFilter(corrected=True)
    first = store.find(where, 10)
    assert len(first.records) < 10 and first.next_cursor is not None  # short page, scan continues
    expected = _newest_first([r for r in records if where.matches(r)])
    assert [r.request_id for r in _read_all(store, where, 10)] == [r.request_id for r in expected]
    primary.stats_scan_bound = 10
    stats = store.summarize(StatsWindow.last_days("digits", 7))
    assert stats.truncated and stats.scanned == 10


def test_record_filter_refuses_bad_values():
    for bad in (
        {"label": 10},
        {"label": True},
        {"confidence_below": 0},
        {"confidence_below": 1.5},
        {"confidence_below": float("nan")},
        {"model": "a b"},
        {"version": ""},
        {"day": "2026-01-01"},
    ):
        with pytest.raises(ValueError):
            RecordFilter(**bad)
    with pytest.raises(ValueError):
        StatsWindow.last_days("digits", 0)
    with pytest.raises(ValueError):
        StatsWindow.last_days("digits", 400)


def test_an_old_database_gets_the_filter_indexes_at_open_and_sqlite_uses_them(tmp_path):
    path = tmp_path / "old.sqlite3"
    records = _variety()
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)  # the schema before filters and tallies existed, with records in it
    conn.executemany(_UPSERT, [_row(r) for r in records])
    conn.execute("CREATE INDEX dr_request_log_corrected ON dr_request_log (day)")  # an earlier layout's index
    conn.commit()
    conn.close()
    window = StatsWindow.last_days("digits", 7)
    for _ in range(2):  # opening migrates (indexes, tallies backfilled); opening again changes nothing
        with SQLiteStore(path) as opened:
            assert len(_read_all(opened, RecordFilter(corrected=True), 5)) == sum(
                r.corrected_label is not None for r in records
            )
            assert opened.summarize(window).total.count == sum(window.contains(r) for r in records)
    conn = sqlite3.connect(path)
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"dr_filter_model", "dr_filter_label", "dr_filter_corrections", "dr_filter_refused"} <= names
    assert "dr_request_log_corrected" not in names

    def plan(sql: str, *params) -> str:
        return " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

    order = "ORDER BY day DESC, sort_key DESC LIMIT 50"
    assert "dr_filter_corrections" in plan(f"SELECT * FROM dr_request_log WHERE {CORRECTED} {order}")
    assert "dr_filter_refused" in plan(f"SELECT * FROM dr_request_log WHERE in_domain = 0 {order}")
    assert "dr_filter_model" in plan(f"SELECT * FROM dr_request_log WHERE model_name = ? {order}", "fashion")
    assert "dr_filter_label" in plan(f"SELECT * FROM dr_request_log WHERE label = ? {order}", 3)
    conn.close()
