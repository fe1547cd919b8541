"""``POST /api/v1/read`` and predict's hint for numbers, against a real waitress server on 127.0.0.1
with the real digits model and a SQLite store: numbers built from MNIST test digits on white paper."""

from __future__ import annotations

import base64
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from digitrec.model.checkpoints import is_model_dir
from digitrec.service.reading import READ_PIXELS
from tests.service_helpers import blank_png, digit_png, mnist_test, multipart, require_models, running_service

GAP = 8  # pixels between digits, at 28 px per digit


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    models = ("digits", "fashion") if is_model_dir(require_models() / "fashion") else ("digits",)
    with running_service(tmp_path_factory.mktemp("read"), models=models) as svc:
        yield svc


def number_png(text: str, scale: int = 4) -> tuple[bytes, list[tuple[int, int]]]:
    """``text`` written with MNIST test digits of those labels, dark on white paper, ``GAP`` px apart at
    28 px scale, then enlarged ``scale`` times; also the x range each digit's 28 px cell covers."""
    images, labels = mnist_test()
    row = np.zeros((28 + 2 * GAP, GAP), np.uint8)
    cells: list[tuple[int, int]] = []
    used: set[int] = set()
    for char in text:
        index = next(i for i in range(len(labels)) if labels[i] == int(char) and i not in used)
        used.add(index)
        digit = np.pad(images[index], ((GAP, GAP), (0, GAP)))
        cells.append((row.shape[1] * scale, (row.shape[1] + 28) * scale))
        row = np.hstack([row, digit])
    paper = 255 - cv2.resize(row, (row.shape[1] * scale, row.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".png", paper)[1].tobytes(), cells


def gif_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("L", (32, 32), 255).save(out, format="GIF")
    return out.getvalue()


def decoded(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    data = base64.b64decode(data_url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_read_answers_the_number_with_a_box_and_preview_per_digit_and_stores_one_record(service):
    png, cells = number_png("2026")
    reply = service.predict(png, path="/api/v1/read?source=upload", filename="form-field.png")
    assert reply.status == 200, reply.body
    assert reply.content_type.startswith("application/json")
    body = reply.json()
    assert body["text"] == "2026"
    assert body["model"] == "digits" and body["model_version"]
    assert 0.5 < body["confidence"] <= 1.0
    assert body["refused"] == []
    assert [d["label"] for d in body["digits"]] == [2, 0, 2, 6]
    width = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE).shape[1]
    for digit, (left, right) in zip(body["digits"], cells):
        box = digit["box"]
        centre = box["x"] + box["width"] / 2
        assert left <= centre <= right, (box, left, right)  # each box is over its own digit
        assert 0 <= box["x"] and box["x"] + box["width"] <= width and box["height"] > 40
        assert digit["name"] == str(digit["label"]) and 0 < digit["confidence"] <= 1
        assert digit["in_domain"] is True and isinstance(digit["domain_score"], float)
        assert decoded(digit["preview_png"]).shape == (28, 28)
    # one record for the whole reading, with its image
    record = service.get(f"/api/v1/records/{body['request_id']}").json()
    assert record["source"] == "upload" and record["file_name"] == "form-field.png"
    assert record["text"] == "2026"
    stored = service.get(body["image_url"])
    assert stored.status == 200 and stored.body == png


def test_a_large_photo_is_read_from_a_shrunk_copy_with_boxes_in_its_own_pixels(service):
    png, cells = number_png("47", scale=40)  # 3200x1760: over READ_PIXELS
    assert 3200 * 1760 > READ_PIXELS
    body = service.predict(png, path="/api/v1/read").json()
    assert body["text"] == "47"
    for digit, (left, right) in zip(body["digits"], cells):
        box = digit["box"]
        assert left <= box["x"] + box["width"] / 2 <= right and box["height"] > 600, box


def test_read_takes_a_raw_body_and_a_canvas_data_url(service):
    png, _ = number_png("47")
    raw = service.post("/api/v1/read", png, {"Content-Type": "image/png"})
    assert raw.status == 200 and raw.json()["text"] == "47"
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    canvas = service.post(
        "/api/v1/read?source=canvas", json.dumps({"image": url}).encode(), {"Content-Type": "application/json"}
    )
    assert canvas.status == 200 and canvas.json()["text"] == "47"
    assert service.get(f"/api/v1/records/{canvas.json()['request_id']}").json()["source"] == "canvas"


def test_read_with_several_files_answers_each_and_names_the_unusable_one(service):
    first, _ = number_png("31")
    second, _ = number_png("380")
    body, headers = multipart(
        [
            ("file", "a.png", first, "image/png"),
            ("file", "notes.txt", b"not an image at all", "image/png"),
            ("file", "b.png", second, "image/png"),
        ]
    )
    reply = service.post("/api/v1/read", body, headers)
    assert reply.status == 207, reply.body
    answer = reply.json()
    assert [(r["index"], r["text"], r["file_name"]) for r in answer["readings"]] == [
        (0, "31", "a.png"),
        (2, "380", "b.png"),
    ]
    (error,) = answer["errors"]
    assert error["index"] == 1 and error["error"] == "invalid_image" and error["message"].startswith("notes.txt: ")


def test_read_errors_are_json_4xx_and_store_nothing(service):
    before = service.get("/api/v1/records?limit=100").json()["records"]
    cases = [
        (service.post("/api/v1/read"), 400, "no_file"),
        (service.predict(b"plain text", path="/api/v1/read", filename="x.png"), 400, "invalid_image"),
        (service.predict(blank_png(), path="/api/v1/read"), 400, "no_digit_found"),
        (service.predict(gif_bytes(), path="/api/v1/read", filename="x.gif", ctype="image/gif"), 415, None),
        (service.predict(number_png("12")[0], path="/api/v1/read?source=printer"), 400, "invalid_source"),
        (service.predict(number_png("12")[0], path="/api/v1/read?model=nope"), 404, "model_unavailable"),
        (service.get("/api/v1/read"), 405, "method_not_allowed"),
    ]
    for reply, status, code in cases:
        assert reply.status == status, (status, reply.body)
        assert reply.content_type.startswith("application/json")
        if code:
            assert reply.json()["error"] == code and reply.json()["message"]
    names = [m["name"] for m in service.get("/api/v1/models").json()["models"]]
    if "fashion" in names:
        reply = service.predict(digit_png(0, dataset="fashion")[0], path="/api/v1/read?model=fashion")
        assert reply.status == 400 and reply.json()["error"] == "cannot_read"
        assert "/api/v1/predict" in reply.json()["message"]
    assert service.get("/api/v1/records?limit=100").json()["records"] == before


def test_predict_says_when_an_image_holds_several_digits(service):
    png, _ = number_png("964")
    (p,) = service.predict(png).json()["predictions"]
    assert p["several_digits"] is True
    assert "/api/v1/read" in p["hint"]
    one, _ = digit_png(0)
    (q,) = service.predict(one).json()["predictions"]
    assert q["several_digits"] is False and "hint" not in q
    assert q["in_domain"] is True and isinstance(q["domain_score"], float)


def test_seed_urls_still_answer_one_digit_for_a_number(service):
    png, _ = number_png("42")
    reply = service.predict(png, path="/digitRecognition/localService/v1.0", filename="x.png")
    assert reply.status == 200
    assert reply.body.startswith(b"The digit is recognized as : ") and reply.body.endswith(b".\n")
    assert len(reply.body) == len(b"The digit is recognized as : 7.\n")


def test_openapi_describes_read(service):
    document = service.get("/api/v1/openapi.json").json()
    operation = document["paths"]["/api/v1/read"]["post"]
    assert {"200", "207", "400", "415"} <= set(operation["responses"])
    reading = document["components"]["schemas"]["Reading"]["properties"]
    assert {"text", "confidence", "digits", "refused", "request_id"} <= set(reading)
    mark = document["components"]["schemas"]["ReadMark"]["properties"]
    assert {"box", "label", "confidence", "in_domain", "domain_score", "preview_png"} <= set(mark)
    prediction = document["components"]["schemas"]["Prediction"]["properties"]
    assert {"in_domain", "domain_score", "several_digits", "hint"} <= set(prediction)
