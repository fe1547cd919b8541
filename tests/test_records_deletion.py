"""Deleting for real: after DELETE /api/v1/records/<id> (or `digitrec records delete`) the image's bytes
are found nowhere in the data folder (SQLite files and their logs, spool files, upload files); purging
by age in batches, by the CLI and by DIGITREC_RETENTION_DAYS. Every store (Cassandra when
CASSANDRA_CONTACT_POINTS is set) deletes and purges."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid
from pathlib import Path

from records_helpers import days_ago, image_bytes, make_record, with_image
from test_records_contract import cassandra_keyspace  # noqa: F401 (a fixture the store fixture asks for)
from test_records_readings import store  # noqa: F401 (each engine alone and behind the spool)

from digitrec.cli import main
from digitrec.records.deletion import purge
from digitrec.records.spool import Spool
from digitrec.records.sqlite_store import SQLiteStore
from tests.service_helpers import digit_png, running_service


def files_holding(folder: Path, needle: bytes) -> list[str]:
    """Every file under ``folder`` whose bytes contain ``needle``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes())


def test_deleting_a_record_leaves_its_image_bytes_nowhere_in_the_data_folder(tmp_path):
    data = tmp_path / "data"
    png = digit_png(7)[0]
    needle = png[len(png) // 2 : len(png) // 2 + 48]  # compressed pixel data, unique to this image
    with running_service(data, keep_upload_files=True) as svc:
        answer = svc.predict(png).json()["predictions"][0]
        rid = uuid.UUID(answer["request_id"])
        record = svc.app.context.store.get(rid)
        # a copy waiting in another replica's spool (a replica that spooled it while the store was down)
        other = Spool(data / "app-2.sqlite3")
        other.put_many([record], {rid: png})
        other.close()
        kept = svc.predict(digit_png(8)[0]).json()["predictions"][0]
        held = files_holding(data, needle)
        assert any(h.startswith("records.sqlite3") for h in held) and "app-2.sqlite3" in held
        assert any(h.startswith("uploads/") for h in held)
        deleted = svc.request("DELETE", f"/api/v1/records/{rid}")
        assert deleted.status == 200, deleted.body
        assert deleted.json()["upload_files"] == 1 and deleted.json()["spool_rows"] >= 2
        assert files_holding(data, needle) == []
        assert svc.get(f"/api/v1/records/{rid}").status == 404
        assert svc.get(f"/api/v1/records/{rid}/image").status == 404
        assert svc.request("DELETE", f"/api/v1/records/{rid}").status == 404
        assert svc.get(f"/api/v1/records/{kept['request_id']}/image").status == 200  # the others stay


def test_the_cli_deletes_records_by_id(tmp_path, capsys):
    data = tmp_path / "data"
    image = image_bytes(3000, seed=5)
    record = with_image(make_record(1), image)
    with SQLiteStore(data / "records.sqlite3") as opened:
        opened.add(record, image)
    assert main(["records", "delete", str(record.request_id), "--data-dir", str(data)]) == 0
    assert f"deleted {record.request_id}" in capsys.readouterr().out
    assert files_holding(data, image[100:160]) == []
    assert main(["records", "delete", str(record.request_id), "--data-dir", str(data)]) == 1  # gone already


def test_every_store_deletes_and_purges(store):  # noqa: F811
    image = image_bytes(2000, seed=1)
    gone = with_image(make_record(2), image)
    old = [dataclasses.replace(make_record(10 + i), request_time=days_ago(40 + i % 3)) for i in range(7)]
    recent = make_record(3)
    store.add(gone, image)
    for record in [*old, recent]:
        store.add(record)
    assert store.delete(gone.request_id)
    assert store.get(gone.request_id) is None and store.get_image(gone.request_id) is None
    assert not store.delete(gone.request_id)
    cutoff = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=30)
    purged = []
    while batch := store.purge_before(cutoff, 3):
        assert len(batch) <= 3
        purged += batch
    assert sorted(r.request_id for r in purged) == sorted(r.request_id for r in old)
    assert all(store.get(r.request_id) is None for r in old) and store.get(recent.request_id) == recent


def test_purge_goes_in_batches_while_records_keep_being_written(tmp_path, capsys):
    data = tmp_path / "data"
    old = [dataclasses.replace(make_record(i), request_time=days_ago(100 + i % 5)) for i in range(1200)]
    for record in old[:40]:  # some with upload files
        path = data / "uploads" / f"{record.request_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
    old = [dataclasses.replace(r, image_path=f"uploads/{r.request_id}.png") if i < 40 else r for i, r in enumerate(old)]
    with SQLiteStore(data / "records.sqlite3") as opened:
        opened.add_many(old)
        written: list[uuid.UUID] = []
        stop = threading.Event()

        def writer() -> None:  # a service's requests, arriving during the purge
            i = 0
            while not stop.is_set() and i < 200:
                record = make_record(5000 + i)
                opened.add(record)
                written.append(record.request_id)
                i += 1
                time.sleep(0.002)

        thread = threading.Thread(target=writer)
        thread.start()
        batches: list[int] = []
        cutoff = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=30)
        report = purge(opened, cutoff, data, data, batch=100, progress=batches.append)
        stop.set()
        thread.join()
        assert report.records == 1200 and report.upload_files == 40 and len(batches) == 12
        assert opened.count() == len(written) and all(opened.get(rid) for rid in written)
    assert not any((data / "uploads").iterdir())
    assert main(["records", "purge", "--before", cutoff.isoformat(), "--data-dir", str(data)]) == 0
    assert "purged 0 record(s)" in capsys.readouterr().out


def test_retention_days_purges_old_records_in_the_running_service(tmp_path):
    data = tmp_path / "data"
    old = dataclasses.replace(make_record(1), request_time=days_ago(45))
    with SQLiteStore(data / "records.sqlite3") as opened:
        opened.add(old)
    with running_service(data, environ={"DIGITREC_RETENTION_DAYS": "30"}) as svc:
        new = svc.predict(digit_png(1)[0]).json()["predictions"][0]
        deadline = time.monotonic() + 20
        while svc.app.context.store.get(old.request_id) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert svc.app.context.store.get(old.request_id) is None
        assert svc.get(f"/api/v1/records/{new['request_id']}").status == 200
