"""A 200 means the record is durable: no record is lost while the store fails, or when the service is
killed with SIGKILL right after answering."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from digitrec.records.exceptions import StoreUnavailableError
from digitrec.records.spool import SpooledStore
from digitrec.records.sqlite_store import SQLiteStore
from digitrec.records.store import RecordStore
from tests.service_helpers import REPO, digit_png, post_file, require_models, running_service


class FaultInjectedStore(RecordStore):
    """FAULT INJECTION: wraps the real SQLite store and makes writes fail while ``failing`` is set.

    There is no other way to make a local SQLite file "unreachable" on demand; reads and everything
    else go to the real store.
    """

    def __init__(self, real: RecordStore) -> None:
        self.real = real
        self.engine = real.engine
        self.failing = threading.Event()
        self.refused = 0

    def _check(self) -> None:
        if self.failing.is_set():
            self.refused += 1
            raise StoreUnavailableError("injected fault: the store is unreachable")

    def add(self, record, image=None):
        self._check()
        self.real.add(record, image)

    def add_many(self, records, images=None):
        self._check()
        self.real.add_many(records, images)

    def add_image(self, record, image):
        self._check()
        return self.real.add_image(record, image)

    def get(self, request_id):
        return self.real.get(request_id)

    def get_image(self, request_id):
        return self.real.get_image(request_id)

    def latest(self, limit=20, cursor=None):
        return self.real.latest(limit, cursor)

    def by_day(self, day):
        return self.real.by_day(day)

    def set_correction(self, request_id, corrected_label, by=None, client=None):
        return self.real.set_correction(request_id, corrected_label, by, client)

    def health(self):
        health = self.real.health()
        if self.failing.is_set():
            return type(health)(False, health.engine, "injected fault", health.spool_depth)
        return health

    def close(self):
        self.real.close()


def test_no_record_lost_while_the_store_fails(tmp_path):
    n = 48
    faulty = FaultInjectedStore(SQLiteStore(tmp_path / "records.sqlite3"))
    store = SpooledStore(faulty, tmp_path / "spool.sqlite3", retry_min=0.05, retry_max=0.2)
    images = [digit_png(i)[0] for i in range(8)]
    try:
        with running_service(tmp_path, store=store) as service:
            faulty.failing.set()
            with ThreadPoolExecutor(16) as pool:
                replies = list(pool.map(lambda i: service.predict(images[i % 8]), range(n)))
            assert [r.status for r in replies] == [200] * n
            ids = {uuid.UUID(r.json()["predictions"][0]["id"]) for r in replies}
            assert len(ids) == n
            assert faulty.refused >= 1
            ready = service.get("/readyz")
            assert ready.status == 200, ready.body  # spooling still counts as ready
            assert ready.json()["store"]["spool_depth"] > 0 and ready.json()["store"]["spooling"] is True
            depth = re.search(r"^digitrec_spool_depth (\S+)$", service.get("/metrics").body.decode(), re.M)
            assert float(depth.group(1)) > 0
            # every answered record can already be read back (from the spool)
            assert all(store.get(i) is not None for i in ids)

            faulty.failing.clear()  # the store recovers
            assert store.wait_drained(timeout=30)
            stored = {r.request_id for r in faulty.real.latest(limit=n + 10).records}
            assert ids <= stored
            assert service.get("/readyz").json()["store"]["spool_depth"] == 0
    finally:
        store.close()


def _start_webservice(data_dir: Path, models_dir: Path) -> tuple[subprocess.Popen, str]:
    # This test reads the SQLite store and the spool the killed process left on disk, so the service
    # must use them even when the suite runs with CASSANDRA_CONTACT_POINTS set for the Cassandra tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSANDRA_")}
    env.update({"PYTHONPATH": str(REPO), "DIGITREC_LAZY": ""})
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "webservice.py"),
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--models-dir",
            str(models_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        match = re.search(r"(http://\S+?)/? ", line)
        if match:
            return proc, match.group(1).rstrip("/")
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"webservice.py did not print its URL (last line {line!r})")


@pytest.mark.slow
def test_sigkill_right_after_the_answers_loses_nothing(tmp_path):
    models_dir = require_models()
    proc, url = _start_webservice(tmp_path, models_dir)
    try:
        images = [digit_png(i)[0] for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda i: post_file(url + "/api/v1/predict", images[i % 8]), range(24)))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert [r.status for r in replies] == [200] * 24
    answered = {uuid.UUID(r.json()["predictions"][0]["id"]) for r in replies}
    # Reopen what the killed process left on disk: the SQLite store and the spool.
    store = SpooledStore(SQLiteStore(tmp_path / "records.sqlite3"), tmp_path / "spool.sqlite3")
    try:
        for request_id in answered:
            record = store.get(request_id)
            assert record is not None, f"record {request_id} lost"
            image = store.get_image(request_id)  # kept with its record, in the same commit
            assert image is not None and hashlib.sha256(image).hexdigest() == record.image_sha256
    finally:
        store.close()
