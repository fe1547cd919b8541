"""Helpers for the records tests: record factories, a fault-injecting store wrapper, a child writer process.

Run as a script (``python tests/records_helpers.py write <data dir> <mode>``) it is the child process of
the kill -9 test: it writes records from 4 threads and prints each request id once ``add`` returned.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__":  # started as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digitrec.records.config import RecordsConfig
from digitrec.records.exceptions import StoreUnavailableError
from digitrec.records.record import PredictionRecord
from digitrec.records.store import Health, Page, RecordStore

UTC = dt.timezone.utc


def make_record(
    i: int = 0, *, when: dt.datetime | None = None, source: str = "api", file_name: str | None = "digit.png"
) -> PredictionRecord:
    """A realistic record; ``when`` places it on a chosen day (request id still minted now)."""
    probabilities = [0.01] * 10
    probabilities[i % 10] = 0.91
    record = PredictionRecord.new(
        model_name="digits",
        model_version="test-1",
        label=i % 10,
        class_name=str(i % 10),
        confidence=0.91,
        probabilities=probabilities,
        source=source,
        file_name=file_name,
        image_path=f"images/{i}.png",
        image_sha256=f"{i:064x}",
        processing_ms=1.5 + i,
    )
    if when is not None:
        import dataclasses

        record = dataclasses.replace(record, request_time=when)
    return record


def image_bytes(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that start like a PNG (stores keep images opaque; only the length matters here)."""
    import random

    body = random.Random(seed).randbytes(max(0, size - 8))
    return (b"\x89PNG\r\n\x1a\n" + body)[:size]


def with_image(record: PredictionRecord, image: bytes) -> PredictionRecord:
    """The record naming ``image`` by its SHA-256, as the service writes it."""
    import dataclasses
    import hashlib

    return dataclasses.replace(record, image_sha256=hashlib.sha256(image).hexdigest())


def days_ago(n: int, hour: int = 12) -> dt.datetime:
    today = dt.datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=n)


class FaultyStore(RecordStore):
    """A real store behind a switch: while ``failing`` is set, writes raise as an unreachable database would.

    This is the one fault the tests inject instead of causing it (an SQLite file cannot be made to
    "go down" and come back on cue); everything behind the switch is a real store.
    """

    def __init__(self, inner: RecordStore, failing: bool = False, reject_ids: set[uuid.UUID] | None = None) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.failing = threading.Event()
        if failing:
            self.failing.set()
        self.reject_ids = reject_ids or set()
        self.failed_writes = 0

    def _check(self, records: list[PredictionRecord]) -> None:
        if self.failing.is_set():
            self.failed_writes += 1
            raise StoreUnavailableError("injected fault: primary store down")
        bad = [r.request_id for r in records if r.request_id in self.reject_ids]
        if bad:
            raise ValueError(f"injected rejection of {bad[0]}")

    def add(self, record: PredictionRecord, image: bytes | None = None) -> None:
        self._check([record])
        self.inner.add(record, image)

    def add_many(self, records, images=None) -> None:
        records = list(records)
        self._check(records)
        self.inner.add_many(records, images)

    def add_image(self, record: PredictionRecord, image: bytes) -> bool:
        self._check([record])
        return self.inner.add_image(record, image)

    def get(self, request_id: uuid.UUID) -> PredictionRecord | None:
        if self.failing.is_set():
            raise StoreUnavailableError("injected fault: primary store down")
        return self.inner.get(request_id)

    def get_image(self, request_id: uuid.UUID) -> bytes | None:
        if self.failing.is_set():
            raise StoreUnavailableError("injected fault: primary store down")
        return self.inner.get_image(request_id)

    def latest(self, limit: int = 20, cursor: str | None = None) -> Page:
        return self.inner.latest(limit, cursor)

    def by_day(self, day: dt.date) -> list[PredictionRecord]:
        return self.inner.by_day(day)

    def set_correction(
        self, request_id: uuid.UUID, corrected_label: int | None, by: str | None = None, client: str | None = None
    ) -> bool:
        if self.failing.is_set():
            raise StoreUnavailableError("injected fault: primary store down")
        return self.inner.set_correction(request_id, corrected_label, by, client)

    def health(self) -> Health:
        if self.failing.is_set():
            return Health(False, self.engine, "injected fault")
        return self.inner.health()

    def close(self) -> None:
        self.inner.close()


def cassandra_env_config(keyspace: str, table: str = "dr_request_log") -> RecordsConfig:
    """Settings for a throw-away keyspace on the server named by CASSANDRA_CONTACT_POINTS."""
    return RecordsConfig.from_env(
        keyspace=keyspace,
        table=table,
        replication=_simple_rf1(),
        consistency=os.environ.get("CASSANDRA_CONSISTENCY", "ONE").upper(),
        request_timeout=30.0,
    )


def _simple_rf1():
    from digitrec.records.config import Replication

    return Replication.parse(os.environ.get("CASSANDRA_TEST_REPLICATION", "SimpleStrategy:1"))


def new_keyspace_name() -> str:
    return f"digitrec_test_{uuid.uuid4().hex[:12]}"


def _child_write(data_dir: str, mode: str) -> None:
    """Write records with images until killed; print each id only after ``add`` returned (i.e. durable)."""
    from digitrec.records.factory import open_primary, open_store
    from digitrec.records.spool import SpooledStore

    config = RecordsConfig.from_env({}, data_dir=data_dir)
    if mode == "primary-down":
        store: RecordStore = SpooledStore(FaultyStore(open_primary(config), failing=True), config.spool_path)
    else:
        store = open_store(config)
    lock = threading.Lock()
    print("ready", flush=True)

    def writer(n: int) -> None:
        i = 0
        while True:
            image = image_bytes(2000 + i % 500, seed=n * 1_000_000 + i)
            record = with_image(make_record(n * 1_000_000 + i), image)
            store.add(record, image)
            with lock:
                sys.stdout.write(f"{record.request_id}\n")
                sys.stdout.flush()
            i += 1

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "write":
        sys.exit("usage: records_helpers.py write DATA_DIR ok|primary-down")
    _child_write(sys.argv[2], sys.argv[3])


def run_writers(write: Callable[[int], None], threads: int = 8) -> None:
    """Run ``write(n)`` for n in 0..threads-1 on that many threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            write(n)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread below
            errors.append(exc)

    workers = [threading.Thread(target=guarded, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
