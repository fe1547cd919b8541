"""The seeds' URLs answer byte for byte what their clients parse (real server, real model)."""

from __future__ import annotations

import re

import pytest

from tests.service_helpers import digit_png, recognizer, running_service


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("legacy")) as svc:
        yield svc


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_local_service_answers_the_seed_sentence(service, version):
    png, _ = digit_png(0)
    label = recognizer("digits").predict(png).label
    reply = service.predict(png, path=f"/digitRecognition/localService/{version}", filename="x.png")
    assert reply.status == 200
    assert reply.body == f"The digit is recognized as : {label}.\n".encode()
    assert reply.content_type == "text/html; charset=utf-8"  # what the Flask seed sent


def test_uploads_post_answers_the_seed_script_output_and_records_it(service):
    png, _ = digit_png(1)
    label = recognizer("digits").predict(png).label
    reply = service.predict(png, path="/uploads", filename="d.png")
    assert reply.status == 200
    assert reply.body == f"Model restored.\nrecognised result:\n{label}\n".encode()
    listing = service.get("/uploads/record")
    assert listing.status == 200 and listing.content_type.startswith("text/plain")
    first = listing.body.decode().splitlines()[0].split("\t")
    assert first[1:4] == ["digits", str(label), "d.png"]
    assert re.fullmatch(r"/uploads/[0-9a-f-]{36}\.png", first[4])
    stored = service.get(first[4])
    assert stored.status == 200 and stored.content_type == "image/png" and stored.body.startswith(b"\x89PNG")
    without_suffix = service.get(first[4].removesuffix(".png"))
    assert without_suffix.body == stored.body


def test_uploads_get_is_the_upload_form(service):
    reply = service.get("/uploads")
    assert reply.status == 200
    assert b'<form action="/uploads" method="post" enctype="multipart/form-data">' in reply.body


def test_legacy_records_have_source_legacy(service):
    png, _ = digit_png(2)
    service.predict(png, path="/digitRecognition/localService/v1.0")
    newest = service.get("/api/v1/records?limit=1").json()["records"][0]
    assert newest["source"] == "legacy" and newest["model_name"] == "digits"


def test_legacy_errors_are_clear_4xx(service):
    no_file = service.post("/digitRecognition/localService/v1.0")
    assert no_file.status == 400 and no_file.json()["error"] == "no_file"
    not_image = service.predict(b"plain text", path="/digitRecognition/localService/v1.1", filename="x.png")
    assert not_image.status == 400 and not_image.json()["error"] == "invalid_image"
    assert service.get("/digitRecognition/localService/v1.0").status == 405
