"""Who made a correction (role, salted client hash), a reviewer's rejection, and the correction key's
hash, in every store: kept by replays, migrated into files of the previous schema, read from spooled
JSON written before they existed. Cassandra runs when CASSANDRA_CONTACT_POINTS is set."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest
from records_helpers import make_record
from test_records_contract import cassandra_keyspace  # noqa: F401 (a fixture the store fixture asks for)
from test_records_readings import store  # noqa: F401 (the fixture: each engine alone and behind the spool)

from digitrec.records.codec import record_from_json, record_to_json
from digitrec.records.sqlite_store import SQLiteStore

KEY_HASH = "ab" * 32


def test_a_correction_keeps_who_made_it_and_a_replay_does_not_erase_it(store):  # noqa: F811
    record = dataclasses.replace(make_record(3), correction_key_sha256=KEY_HASH)
    store.add(record)
    assert store.get(record.request_id).correction_key_sha256 == KEY_HASH
    assert store.set_correction(record.request_id, 5, "submitter", "0123456789abcdef")
    store.add(record)  # the same record again, as a spool replay sends it: the correction stays
    got = store.get(record.request_id)
    assert (got.corrected_label, got.corrected_by, got.corrected_client, got.correction_rejected) == (
        5,
        "submitter",
        "0123456789abcdef",
        False,
    )
    assert store.reject_correction(record.request_id)
    assert store.get(record.request_id).correction_rejected is True
    assert store.set_correction(record.request_id, 6, "reviewer", "fedcba9876543210")  # a new verdict
    got = store.get(record.request_id)
    assert (got.corrected_label, got.corrected_by, got.correction_rejected) == (6, "reviewer", False)
    assert store.set_correction(record.request_id, None)  # taken back: nobody made it
    got = store.get(record.request_id)
    assert (got.corrected_label, got.corrected_by, got.corrected_client) == (None, None, None)
    assert not store.reject_correction(record.request_id)  # nothing to reject
    with pytest.raises(ValueError):
        store.set_correction(record.request_id, 1, "stranger", None)


def test_spooled_json_from_before_provenance_still_reads():
    record = make_record(1).with_correction(2)
    data = json.loads(record_to_json(record))
    for field in ("correction_key_sha256", "corrected_by", "corrected_client", "correction_rejected"):
        del data[field]
    old = record_from_json(json.dumps(data))
    assert old == record and old.corrected_by is None and old.correction_rejected is False


def test_a_records_file_without_the_provenance_columns_gains_them_at_open(tmp_path):
    from digitrec.records.sqlite_store import SCHEMA

    added = ("correction_key_sha256", "corrected_by", "corrected_client", "correction_rejected")
    lines = [line for line in SCHEMA.splitlines() if not line.strip().startswith(added)]
    previous = "\n".join(lines).replace("corrected_text  TEXT,", "corrected_text  TEXT")  # the previous layout
    path = tmp_path / "records.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(previous)
    conn.close()
    record = make_record(4)
    with SQLiteStore(path) as upgraded:
        upgraded.add(record)
        assert upgraded.get(record.request_id) == record
        assert upgraded.set_correction(record.request_id, 9, "admin", "00ff00ff00ff00ff")
        assert upgraded.get(record.request_id).corrected_by == "admin"
    conn = sqlite3.connect(path)
    assert set(added) <= {row[1] for row in conn.execute("PRAGMA table_info(dr_request_log)")}
    conn.close()
