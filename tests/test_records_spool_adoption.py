"""Spools of several processes: each process owns one (a flock), and the spool of a process that died
is adopted by a live one, exactly once, even when two processes look at the same time.

The writer that dies is a real process (tests/records_helpers.py) whose primary store is switched off
with ``FaultyStore`` (the one injected fault: a local SQLite file cannot go down), killed with SIGKILL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from records_helpers import make_record

from digitrec.records import spool_files
from digitrec.records.spool import Spool, SpooledStore
from digitrec.records.sqlite_store import SQLiteStore

pytestmark = pytest.mark.skipif(spool_files.fcntl is None, reason="spool ownership uses flock (POSIX)")

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).resolve().parent / "records_helpers.py"

ADOPTER = """
import os, sys, time
from pathlib import Path
from digitrec.records.spool import SpooledStore
from digitrec.records.sqlite_store import SQLiteStore
data = Path(sys.argv[1])
orphans = [data / name for name in sys.argv[2:]]
store = SpooledStore(SQLiteStore(data / "records.sqlite3"), data / f"spool.worker-{os.getpid()}.sqlite3")
deadline = time.monotonic() + 120
while any(p.exists() for p in orphans) and time.monotonic() < deadline:
    store.adopt_orphans()
    time.sleep(0.05)
assert store.wait_drained(60)
print(store.adopted_total, flush=True)
store.close()
"""


def image_of(request_id: uuid.UUID) -> bytes:
    return b"\x89PNG\r\n\x1a\n image of " + str(request_id).encode()


def image_record(i: int):
    record = make_record(i)
    return dataclasses.replace(record, image_sha256=hashlib.sha256(image_of(record.request_id)).hexdigest())


def stored_ids(data: Path) -> set[str]:
    conn = sqlite3.connect(data / "records.sqlite3", timeout=30)
    try:
        return {row[0] for row in conn.execute("SELECT request_id FROM dr_request_log")}
    finally:
        conn.close()


def test_the_spool_of_a_killed_process_is_adopted_only_once_it_is_dead(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HELPER.parent}"}
    writer = subprocess.Popen(
        [sys.executable, str(HELPER), "write", str(tmp_path), "primary-down"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acknowledged: list[str] = []
    try:
        assert writer.stdout.readline().strip() == "ready"
        while len(acknowledged) < 300:
            acknowledged.append(writer.stdout.readline().strip())
        adopter = SpooledStore(SQLiteStore(tmp_path / "records.sqlite3"), tmp_path / "spool.worker-1.sqlite3")
        try:
            # The writer is alive and holds its spool's lock: nobody may take its records.
            assert adopter.adopt_orphans() == 0
            assert (tmp_path / "spool.sqlite3").exists()
            assert spool_files.depth_at(tmp_path / "spool.sqlite3") >= len(acknowledged)
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=30)
            acknowledged += [line.strip() for line in writer.stdout.read().splitlines() if line.strip()]
            adopter.adopt_orphans()  # (its replay thread may have been quicker: it also adopts at start)
            assert adopter.adopted_total >= len(acknowledged)
            assert adopter.wait_drained(60)
        finally:
            adopter.close()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    missing = set(acknowledged) - stored_ids(tmp_path)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged records were not replayed"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("spool.sqlite3"))
    assert leftovers == [], leftovers
    # the adopter's own spool stays (empty), the dead writer's is gone
    assert spool_files.total_depth(tmp_path) == 0


def test_two_processes_adopting_at_once_replay_each_orphan_once(tmp_path):
    expected: set[str] = set()
    names = []
    for n in range(4):  # spools of four processes that are gone (nobody holds their locks)
        path = tmp_path / f"spool.worker-{90000 + n}.sqlite3"
        spool = Spool(path)
        records = [image_record(n * 1000 + i) for i in range(150)]
        spool.put_many(records, {r.request_id: image_of(r.request_id) for r in records})
        spool.close()
        expected |= {str(r.request_id) for r in records}
        names.append(path.name)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    adopters = [
        subprocess.Popen(
            [sys.executable, "-c", ADOPTER, str(tmp_path), *names], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    counts = []
    for process in adopters:
        out, _ = process.communicate(timeout=180)
        assert process.returncode == 0
        counts.append(int(out.strip()))
    assert sum(counts) == len(expected), f"adopted {counts}: a spool was replayed twice or not at all"
    assert stored_ids(tmp_path) == expected
    assert not [name for name in names if (tmp_path / name).exists()]
    store = SQLiteStore(tmp_path / "records.sqlite3")
    try:  # the images travelled with their records
        for request_id in list(expected)[:20]:
            assert store.get_image(uuid.UUID(request_id)) == image_of(uuid.UUID(request_id))
    finally:
        store.close()


def test_only_spools_of_the_own_family_are_adopted(tmp_path):
    """Replicas sharing a volume name their spools apart (DIGITREC_SPOOL_PATH): never adopted."""
    for name in ("app.sqlite3", "app-2.sqlite3", "app-2.worker-77.sqlite3", "app.worker-5.sqlite3"):
        spool = Spool(tmp_path / name)
        spool.put_many([make_record(len(name))])
        spool.close()
    own = tmp_path / "app.worker-1.sqlite3"
    assert [p.name for p in spool_files.spool_files(own)] == ["app.sqlite3", "app.worker-5.sqlite3"]
    store = SpooledStore(SQLiteStore(tmp_path / "records.sqlite3"), own)
    try:
        store.adopt_orphans()
        assert store.wait_drained(30)
        assert store.adopted_total == 2
    finally:
        store.close()
    assert sorted(p.name for p in tmp_path.glob("app*.sqlite3")) == [
        "app-2.sqlite3",
        "app-2.worker-77.sqlite3",
        "app.worker-1.sqlite3",
    ]


def test_a_name_owned_by_a_live_process_is_not_shared(tmp_path):
    first = SpooledStore(SQLiteStore(tmp_path / "records.sqlite3"), tmp_path / "spool.sqlite3")
    second = SpooledStore(SQLiteStore(tmp_path / "records.sqlite3"), tmp_path / "spool.sqlite3")
    try:
        assert first.spool.path == tmp_path / "spool.sqlite3"
        assert second.spool.path == tmp_path / f"spool.worker-{os.getpid()}.sqlite3"
    finally:
        second.close()
        first.close()
    # closed: the name is free again
    third = SpooledStore(SQLiteStore(tmp_path / "records.sqlite3"), tmp_path / "spool.sqlite3")
    try:
        assert third.spool.path == tmp_path / "spool.sqlite3"
    finally:
        third.close()
