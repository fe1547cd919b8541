"""Deleting for real: a record, its image, its upload file and every spooled copy; and purging by age.

A record's bytes live in up to four places: the store (record and image; SQLite also in its
write-ahead log until a checkpoint), the upload file ``uploads/YYYY/MM/DD/<id>.png`` on the data
volume, and the spool files of the processes that spooled it (their own write-ahead logs included).
``delete_record`` clears all of them; SQLite overwrites freed pages with zeros (``secure_delete``) and
its logs are truncated after the delete, so the image's bytes are found nowhere in the data folder.

``purge`` deletes every record of the days before a date in batches of ``batch`` records, one short
transaction each with a pause between, so requests keep being served meanwhile. Cassandra deletes
whole day partitions (new rows also expire by themselves with ``CASSANDRA_TTL``, which
``DIGITREC_RETENTION_DAYS`` sets when it is not set itself).

``digitrec records export`` is the way to keep a copy first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from digitrec.records.images import upload_file
from digitrec.records.record import PredictionRecord
from digitrec.records.store import RecordStore

log = logging.getLogger(__name__)

PURGE_BATCH = 500
PURGE_PAUSE = 0.05  # seconds between batches, so the writer takes requests' records in between


@dataclasses.dataclass
class DeleteReport:
    found: bool = False  # the store had the record
    upload_files: int = 0  # upload files removed
    spool_rows: int = 0  # rows removed from other processes' spool files
    records: int = 0  # records purged (``purge``)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def remove_upload(data_dir: Path, record: PredictionRecord) -> bool:
    """Remove the record's upload file, if it has one inside ``<data dir>/uploads``."""
    path = upload_file(Path(data_dir), record.image_path) if record.image_path else None
    if path is None:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def spool_files(spool_dir: Path, skip: Path | None = None) -> list[Path]:
    """The SQLite files in ``spool_dir`` that are spools (they hold a ``spool`` table), but ``skip``."""
    found = []
    for path in sorted(Path(spool_dir).glob("*.sqlite3")):
        if skip is not None and path.resolve() == Path(skip).resolve():
            continue
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
            try:
                if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'spool'").fetchone():
                    found.append(path)
            finally:
                conn.close()
        except sqlite3.Error:
            continue
    return found


def delete_from_spool_files(
    spool_dir: Path, request_ids: list[str] | None, *, before: dt.date | None = None, skip: Path | None = None
) -> int:
    """Delete these records (or those of days before ``before``) from every spool file in ``spool_dir``
    but ``skip`` (this process's own, which its ``Spool`` handles); each file's log is truncated after."""
    from digitrec.records.spool import delete_spooled
    from digitrec.records.sqlite_store import connect, scrub_log

    removed = 0
    for path in spool_files(spool_dir, skip):
        conn = connect(path)
        try:
            ids = list(request_ids or [])
            if before is not None:
                for table in ("spool", "rejected"):
                    ids += [
                        row[0]
                        for row in conn.execute(
                            f"SELECT request_id FROM {table} WHERE json_extract(payload, '$.request_time') < ?",
                            (before.isoformat(),),
                        )
                    ]
            if not ids:
                continue
            conn.execute("BEGIN IMMEDIATE")
            count = delete_spooled(conn, ids)
            conn.execute("COMMIT")
        finally:
            conn.close()
        if count:
            removed += count
            scrub_log(path)
    return removed


def delete_record(
    store: RecordStore, request_id: uuid.UUID, data_dir: Path, spool_dir: Path | None, own_spool: Path | None = None
) -> DeleteReport:
    """Remove the record everywhere (see the module's description); ``found`` says whether it existed."""
    report = DeleteReport()
    record = store.get(request_id)
    report.found = store.delete(request_id)
    if record is not None and remove_upload(data_dir, record):
        report.upload_files += 1
    elif record is None:  # not in the store: an upload file of the usual name may still exist
        for path in Path(data_dir, "uploads").glob(f"*/*/*/{request_id}.png"):
            path.unlink(missing_ok=True)
            report.upload_files += 1
    if spool_dir is not None and Path(spool_dir).is_dir():
        report.spool_rows = delete_from_spool_files(Path(spool_dir), [str(request_id)], skip=own_spool)
    report.found = report.found or report.upload_files > 0 or report.spool_rows > 0
    return report


def purge(
    store: RecordStore,
    before: dt.date,
    data_dir: Path,
    spool_dir: Path | None,
    *,
    own_spool: Path | None = None,
    batch: int = PURGE_BATCH,
    pause: float = PURGE_PAUSE,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> DeleteReport:
    """Delete every record of the UTC days before ``before``, in batches (see the module's description)."""
    report = DeleteReport()
    while stop is None or not stop.is_set():
        found = store.purge_before(before, batch)
        if not found:
            break
        report.records += len(found)
        report.upload_files += sum(remove_upload(data_dir, r) for r in found)
        if progress is not None:
            progress(report.records)
        time.sleep(pause)
    if report.records:
        store.scrub()
    if spool_dir is not None and Path(spool_dir).is_dir():
        report.spool_rows = delete_from_spool_files(Path(spool_dir), None, before=before, skip=own_spool)
    return report


class RetentionPurger:
    """Purges records older than ``days`` days once at start and then every ``interval`` seconds, in a
    daemon thread (``DIGITREC_RETENTION_DAYS``)."""

    def __init__(
        self,
        store: RecordStore,
        days: int,
        data_dir: Path,
        spool_dir: Path | None,
        own_spool: Path | None,
        interval: float = 3600.0,
    ) -> None:
        self.store, self.days, self.interval = store, days, interval
        self.data_dir, self.spool_dir, self.own_spool = data_dir, spool_dir, own_spool
        self.last: DeleteReport | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="records-retention", daemon=True)
        self._thread.start()

    def cutoff(self) -> dt.date:
        return dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=self.days)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = purge(
                    self.store, self.cutoff(), self.data_dir, self.spool_dir, own_spool=self.own_spool, stop=self._stop
                )
                if self.last.records:
                    log.info("retention: purged %d record(s) from before %s", self.last.records, self.cutoff())
            except Exception:  # noqa: BLE001 - tried again at the next interval; serving goes on
                log.exception("retention purge failed; trying again in %.0f s", self.interval)
            self._stop.wait(self.interval)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
