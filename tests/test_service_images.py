"""Images travel with their record: the service writes each request's PNG into the records store with the
record, and serves it from there to any replica (real waitress servers, real model, real SQLite file)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from digitrec.errors import ConfigurationError
from digitrec.records.sqlite_store import SQLiteStore
from digitrec.service.config import ServiceConfig
from tests.service_helpers import digit_png, running_service

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _predict(service, index: int) -> dict:
    png, _ = digit_png(index)
    reply = service.predict(png)
    assert reply.status == 200, reply.body
    return reply.json()["predictions"][0]


def test_the_image_is_in_the_store_and_served_from_it_once_the_file_is_gone(tmp_path):
    store = SQLiteStore(tmp_path / "records.sqlite3")
    try:
        with running_service(tmp_path, store=store, keep_upload_files=True) as service:
            p = _predict(service, 3)
            record = service.get(f"/api/v1/records/{p['id']}").json()
            stored_file = service.data_dir / record["image_path"]
            kept = store.get_image(uuid.UUID(p["id"]))
            assert kept == stored_file.read_bytes()
            assert hashlib.sha256(kept).hexdigest() == record["image_sha256"]

            stored_file.unlink()  # an operator cleaned the volume, or this replica never had the file
            for path in (f"/api/v1/records/{p['id']}/image", f"/uploads/{p['id']}.png"):
                reply = service.get(path)
                assert reply.status == 200 and reply.content_type == "image/png"
                assert reply.body == kept
            page = service.get("/records").body.decode()
            assert f'src="/api/v1/records/{p["id"]}/preview"' in page  # the thumbnail: what the model saw
            preview = service.get(f"/api/v1/records/{p['id']}/preview")  # made from the stored copy
            assert preview.status == 200 and preview.content_type == "image/png"
    finally:
        store.close()


def test_by_default_nothing_is_written_under_uploads(tmp_path):
    with running_service(tmp_path) as service:
        p = _predict(service, 4)
        record = service.get(f"/api/v1/records/{p['id']}").json()
        assert record["image_path"] is None
        assert record["image_url"] == f"/api/v1/records/{p['id']}/image"
        reply = service.get(record["image_url"])
        assert reply.status == 200 and reply.body.startswith(b"\x89PNG")
        assert hashlib.sha256(reply.body).hexdigest() == record["image_sha256"]
        assert service.get(f"/uploads/{p['id']}.png").body == reply.body
        assert [f for f in (tmp_path / "uploads").rglob("*") if f.is_file()] == []
        assert f'src="/api/v1/records/{p["id"]}/preview"' in service.get("/records").body.decode()
        assert service.get(record["preview_url"]).body.startswith(b"\x89PNG")  # made from the store's copy


def test_a_replica_without_the_file_serves_the_image_from_the_shared_store(tmp_path):
    """Two apps with their own data folders (their own volumes) and one records store."""
    store = SQLiteStore(tmp_path / "shared" / "records.sqlite3")
    try:
        with (
            running_service(tmp_path / "a", store=store) as replica_a,
            running_service(tmp_path / "b", store=store) as replica_b,
        ):
            p = _predict(replica_a, 5)
            from_a = replica_a.get(f"/api/v1/records/{p['id']}/image")
            assert not list((tmp_path / "b" / "uploads").rglob("*.png"))
            from_b = replica_b.get(f"/api/v1/records/{p['id']}/image")
            assert from_b.status == 200 and from_b.body == from_a.body
            corrected = replica_b.post(
                f"/api/v1/records/{p['id']}/correction", b'{"label": 1}', {"Content-Type": "application/json"}
            )
            assert corrected.status == 200
            assert replica_a.get(f"/api/v1/records/{p['id']}").json()["corrected_label"] == 1
    finally:
        store.close()


def test_a_record_from_before_images_were_stored_is_served_from_its_file(tmp_path):
    from tests.records_helpers import make_record

    png, _ = digit_png(6)
    store = SQLiteStore(tmp_path / "records.sqlite3")
    try:
        with running_service(tmp_path, store=store) as service:
            record = make_record(6)
            relative, sha256 = service.app.context.uploads.save(record.request_id, record.request_time, png)
            import dataclasses

            store.add(dataclasses.replace(record, image_path=relative, image_sha256=sha256))  # no image in the store
            assert store.get_image(record.request_id) is None
            reply = service.get(f"/api/v1/records/{record.request_id}/image")
            assert reply.status == 200 and reply.body == png
            (tmp_path / relative).unlink()
            gone = service.get(f"/api/v1/records/{record.request_id}/image")
            assert gone.status == 404 and gone.json()["error"] == "not_found"
    finally:
        store.close()


def test_keep_upload_files_is_read_from_the_environment():
    assert ServiceConfig.from_env({}).keep_upload_files is False  # the image is kept once, in the store
    assert ServiceConfig.from_env({"DIGITREC_KEEP_UPLOAD_FILES": "1"}).keep_upload_files is True
    with pytest.raises(ConfigurationError, match="DIGITREC_KEEP_UPLOAD_FILES"):
        ServiceConfig.from_env({"DIGITREC_KEEP_UPLOAD_FILES": "maybe"})
