"""The durable spool: outages, kill -9, leftovers at start, corrections while spooled, poison records.

``FaultyStore`` (tests/records_helpers.py) wraps a real SQLite store and raises while switched on: it
is the only injected fault, because a local SQLite file cannot be made to go down and come back.
The Cassandra-unreachable case below is real (a refused TCP port).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from records_helpers import FaultyStore, image_bytes, make_record, run_writers, with_image

from digitrec.records.config import RecordsConfig
from digitrec.records.exceptions import StoreUnavailableError
from digitrec.records.factory import open_store
from digitrec.records.spool import SpooledStore, spool_depth_at
from digitrec.records.sqlite_store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).resolve().parent / "records_helpers.py"


def _spooled(tmp_path, failing: bool = False, **kwargs) -> tuple[SpooledStore, FaultyStore]:
    faulty = FaultyStore(SQLiteStore(tmp_path / "records.sqlite3"), failing=failing)
    return SpooledStore(faulty, tmp_path / "spool.sqlite3", retry_min=0.05, retry_max=0.2, **kwargs), faulty


def _image_matches(store, request_id: uuid.UUID) -> bool | None:
    """None without an image; else whether its bytes are the ones the record's SHA-256 names."""
    import hashlib

    image = store.get_image(request_id)
    if image is None:
        return None
    return hashlib.sha256(image).hexdigest() == store.get(request_id).image_sha256


def _stored_ids(path: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT request_id FROM dr_request_log")]
    finally:
        conn.close()


def test_outage_under_eight_writers_loses_nothing_and_duplicates_nothing(tmp_path):
    store, faulty = _spooled(tmp_path)
    written: list[list[uuid.UUID]] = [[] for _ in range(8)]
    outage_started = threading.Event()

    def write(n: int) -> None:
        for i in range(300):
            if n == 0 and i == 50:
                faulty.failing.set()  # the primary goes down mid-stream ...
                outage_started.set()
            record = make_record(i)
            store.add(record)
            written[n].append(record.request_id)
            if n == 0 and i == 200:
                faulty.failing.clear()  # ... and comes back while the others still write

    run_writers(write)
    assert outage_started.is_set() and faulty.failed_writes > 0
    assert store.spooled_total > 0, "the outage must have sent records to the spool"
    assert store.wait_drained(timeout=30), f"spool still holds {store.spool_depth} records"

    expected = sorted(str(i) for ids in written for i in ids)
    assert len(expected) == 2400
    assert sorted(_stored_ids(tmp_path / "records.sqlite3")) == expected  # each exactly once
    assert store.replayed_total == store.spooled_total  # every spooled record was replayed once
    assert store.health().ok and store.health().spool_depth == 0
    store.close()


def test_records_wait_in_the_spool_while_down_and_are_readable_and_correctable(tmp_path):
    store, faulty = _spooled(tmp_path, failing=True)
    records = [make_record(i) for i in range(5)]
    for record in records:
        store.add(record)
    assert store.spool_depth == 5
    assert store.primary_down
    health = store.health()
    assert not health.ok and health.spool_depth == 5
    assert store.get(records[2].request_id) == records[2]  # served from the spool
    assert store.set_correction(records[2].request_id, 9) is True
    with pytest.raises(StoreUnavailableError):  # unknown id and the primary cannot be asked: no guessing
        store.set_correction(uuid.uuid1(), 9)

    faulty.failing.clear()
    assert store.wait_drained(timeout=10)
    assert faulty.inner.get(records[2].request_id).corrected_label == 9
    assert {r.request_id for r in faulty.inner.latest(10).records} == {r.request_id for r in records}
    assert not store.primary_down
    store.close()


def test_images_wait_in_the_spool_with_their_records_and_replay_with_them(tmp_path):
    store, faulty = _spooled(tmp_path, failing=True)
    images = [image_bytes(3000 + 400_000 * (i == 2), seed=i) for i in range(4)]
    records = [with_image(make_record(i), image) for i, image in enumerate(images)]
    store.add_many(records[:2], {r.request_id: image for r, image in zip(records, images[:2])})
    store.add(records[2], images[2])
    store.add(records[3])  # one record without an image
    assert store.spool_depth == 4
    assert store.get_image(records[2].request_id) == images[2]  # served from the spool while down
    assert store.set_correction(records[0].request_id, 5) is True  # the correction keeps the image
    store.close()  # and a restart with the primary still down keeps both

    faulty = FaultyStore(SQLiteStore(tmp_path / "records.sqlite3"), failing=True)
    store = SpooledStore(faulty, tmp_path / "spool.sqlite3", retry_min=0.05, retry_max=0.2)
    assert store.get_image(records[1].request_id) == images[1]
    faulty.failing.clear()
    assert store.wait_drained(timeout=10)
    primary = faulty.inner
    assert [primary.get_image(r.request_id) for r in records] == [*images[:3], None]
    assert primary.get(records[0].request_id).corrected_label == 5
    import sqlite3

    conn = sqlite3.connect(tmp_path / "spool.sqlite3")
    assert conn.execute("SELECT COUNT(*) FROM spool_image").fetchone()[0] == 0  # replayed images leave the spool
    conn.close()
    store.close()


def test_a_replay_batch_reads_a_bounded_amount_of_image_bytes(tmp_path):
    from digitrec.records.spool import Spool

    spool = Spool(tmp_path / "spool.sqlite3")
    images = [image_bytes(100_000, seed=i) for i in range(10)]
    records = [with_image(make_record(i), image) for i, image in enumerate(images)]
    spool.put_many(records, {r.request_id: image for r, image in zip(records, images)})
    batch = spool.oldest(500, max_bytes=250_000)
    assert [item.record.request_id for item in batch] == [r.request_id for r in records[:3]]
    assert [item.image for item in batch] == images[:3]
    assert len(spool.oldest(500, max_bytes=1)) == 1  # always at least one, however large
    spool.close()


def test_leftovers_are_replayed_when_the_store_opens(tmp_path):
    store, _ = _spooled(tmp_path, failing=True)
    records = [make_record(i) for i in range(20)]
    store.add_many(records)
    store.close()
    assert spool_depth_at(tmp_path / "spool.sqlite3") == 20

    reopened = open_store(RecordsConfig.from_env({}, data_dir=tmp_path, spool_retry_min=0.05))
    assert reopened.wait_drained(timeout=10)
    assert sorted(_stored_ids(tmp_path / "records.sqlite3")) == sorted(str(r.request_id) for r in records)
    reopened.close()
    assert spool_depth_at(tmp_path / "spool.sqlite3") == 0


def test_a_record_the_primary_refuses_is_set_aside_and_the_rest_replay(tmp_path):
    store, faulty = _spooled(tmp_path, failing=True)
    records = [make_record(i) for i in range(4)]
    store.add_many(records)
    faulty.reject_ids.add(records[1].request_id)
    faulty.failing.clear()
    assert store.wait_drained(timeout=10)
    assert store.rejected_total == 1
    assert sorted(_stored_ids(tmp_path / "records.sqlite3")) == sorted(
        str(r.request_id) for r in records if r is not records[1]
    )
    import sqlite3

    conn = sqlite3.connect(tmp_path / "spool.sqlite3")
    assert [row[0] for row in conn.execute("SELECT request_id FROM rejected")] == [str(records[1].request_id)]
    conn.close()
    store.close()


def test_a_refused_records_image_is_set_aside_with_it(tmp_path):
    store, faulty = _spooled(tmp_path, failing=True)
    image = image_bytes(2048, seed=9)
    record = with_image(make_record(1), image)
    store.add(record, image)
    faulty.reject_ids.add(record.request_id)
    faulty.failing.clear()
    assert store.wait_drained(timeout=10)
    import sqlite3

    conn = sqlite3.connect(tmp_path / "spool.sqlite3")
    assert conn.execute("SELECT request_id, data FROM rejected_image").fetchall() == [(str(record.request_id), image)]
    assert conn.execute("SELECT COUNT(*) FROM spool_image").fetchone()[0] == 0
    conn.close()
    store.close()


def test_unreachable_cassandra_spools_instead_of_failing(tmp_path):
    """A real outage: nothing listens on 127.0.0.1 port 1, so every connection attempt is refused."""
    config = RecordsConfig.from_env(
        {"CASSANDRA_CONTACT_POINTS": "127.0.0.1", "CASSANDRA_PORT": "1", "CASSANDRA_CONNECT_TIMEOUT": "2"},
        data_dir=tmp_path,
    )
    store = open_store(config)
    record = make_record(3)
    store.add(record)
    store.add(make_record(4))  # second write goes straight to the spool (no second connect timeout)
    assert store.spool_depth == 2
    assert store.get(record.request_id) == record
    health = store.health()
    assert not health.ok and health.engine == "cassandra" and health.spool_depth == 2
    store.close()
    assert spool_depth_at(tmp_path / "spool.sqlite3") == 2


@pytest.mark.parametrize("mode", ["ok", "primary-down"])
def test_every_id_reported_saved_survives_kill_9(tmp_path, mode):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(HELPER), "write", str(tmp_path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    reported: list[str] = []
    try:
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while len(reported) < 400 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            reported.append(line.strip())
        child.send_signal(signal.SIGKILL)  # mid-stream: writer threads are still adding
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    reported += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.stdout.close()
    assert len(reported) >= 400

    if mode == "primary-down":
        assert spool_depth_at(tmp_path / "spool.sqlite3") >= len(reported)
    store = open_store(RecordsConfig.from_env({}, data_dir=tmp_path, spool_retry_min=0.05))
    try:
        assert store.wait_drained(timeout=30)
        missing = [rid for rid in reported if store.get(uuid.UUID(rid)) is None]
        assert missing == []
        without_image = [rid for rid in reported if _image_matches(store, uuid.UUID(rid)) is not True]
        assert without_image == []
        assert set(reported) <= set(_stored_ids(tmp_path / "records.sqlite3"))
    finally:
        store.close()


def test_each_replica_can_have_its_own_spool_file_on_a_shared_volume(tmp_path):
    config = RecordsConfig.from_env({"DIGITREC_SPOOL_PATH": "spool/replica-2.sqlite3"}, data_dir=tmp_path)
    assert config.spool_path == tmp_path / "spool" / "replica-2.sqlite3"
    assert RecordsConfig.from_env({}, data_dir=tmp_path).spool_path == tmp_path / "spool.sqlite3"
    absolute = tmp_path / "elsewhere.sqlite3"
    assert RecordsConfig.from_env({"DIGITREC_SPOOL_PATH": str(absolute)}, data_dir="/data").spool_path == absolute
    store = open_store(config)
    try:
        assert store.spool.path == tmp_path / "spool" / "replica-2.sqlite3" and store.spool.path.is_file()
    finally:
        store.close()
