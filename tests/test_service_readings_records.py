"""Reading records over real HTTP: listed, filtered ("refused"), shown with their boxes, corrected by text.

The readings are written straight into the service's real SQLite store (as the read endpoint writes
them: a record with its input image); the server under test is a real waitress server on 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import cv2
import numpy as np
import pytest

from digitrec.records.record import Mark, PredictionRecord
from digitrec.records.sqlite_store import SQLiteStore
from tests.service_helpers import digit_png, mnist_test, running_service

DIGIT = 112  # each digit's side in the composed picture


def number_png(indices: list[int], gap: int = 24, blot: bool = False) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """MNIST test digits in a row on white paper (and optionally a filled disc after them), with their boxes."""
    images, _labels = mnist_test()
    width = len(indices) * (DIGIT + gap) + gap + (DIGIT + gap if blot else 0)
    paper = np.full((DIGIT + 2 * gap, width), 255, np.uint8)
    boxes = []
    for n, index in enumerate(indices):
        x = gap + n * (DIGIT + gap)
        paper[gap : gap + DIGIT, x : x + DIGIT] = 255 - cv2.resize(images[index], (DIGIT, DIGIT))
        boxes.append((x, gap, DIGIT, DIGIT))
    if blot:
        x = gap + len(indices) * (DIGIT + gap)
        cv2.circle(paper, (x + DIGIT // 2, gap + DIGIT // 2), DIGIT // 3, 0, -1)
        boxes.append((x + DIGIT // 2 - DIGIT // 3, gap + DIGIT // 6, 2 * (DIGIT // 3), 2 * (DIGIT // 3)))
    ok, buffer = cv2.imencode(".png", paper)
    assert ok
    return buffer.tobytes(), boxes


def reading_record(text: str, boxes, png: bytes, refused: int = 0) -> PredictionRecord:
    probabilities = [0.001] * 10
    probabilities[int(text[0])] = 0.99
    marks = [Mark(label=int(c), confidence=0.99, box=b, in_domain=True, domain_score=5.0) for c, b in zip(text, boxes)]
    odd = [Mark(label=0, confidence=0.4, box=b, in_domain=False, domain_score=-3.0) for b in boxes[len(text) :]]
    assert len(odd) == refused
    record = PredictionRecord.new(
        model_name="digits",
        model_version="test-1",
        label=int(text[0]),
        class_name=text[0],
        confidence=0.97,
        probabilities=probabilities,
        source="upload",
        file_name=f"{text}.png",
        image_sha256=hashlib.sha256(png).hexdigest(),
    )
    return dataclasses.replace(
        record,
        kind="reading",
        text=text,
        digits=marks,
        refused=odd,
        in_domain=not odd,
        domain_score=-3.0 if odd else 5.0,
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("readings")
    store = SQLiteStore(data_dir / "records.sqlite3")
    with running_service(data_dir, store=store) as svc:
        svc.store = store
        yield svc
    store.close()


@pytest.fixture(scope="module")
def made(service):
    """A plain reading "72", a reading "21" with a refused blot, and a one-digit prediction."""
    plain_png, plain_boxes = number_png([0, 1])  # MNIST test 0 and 1 are a 7 and a 2
    blot_png, blot_boxes = number_png([1, 2], blot=True)
    plain = reading_record("72", plain_boxes, plain_png)
    blotted = reading_record("21", blot_boxes, blot_png, refused=1)
    service.store.add(plain, plain_png)
    service.store.add(blotted, blot_png)
    png, _truth = digit_png(3)
    reply = service.predict(png)
    assert reply.status == 200, reply.body
    digit_id = reply.json()["predictions"][0]["request_id"]
    return {"plain": plain, "blotted": blotted, "digit": digit_id}


def _post_json(service, rid, document):
    return service.post(
        f"/api/v1/records/{rid}/correction", json.dumps(document).encode(), {"Content-Type": "application/json"}
    )


def test_readings_are_listed_with_text_and_boxes_and_the_refused_filter(service, made):
    body = service.get("/api/v1/records?limit=10").json()
    by_id = {r["request_id"]: r for r in body["records"]}
    plain = by_id[str(made["plain"].request_id)]
    assert plain["kind"] == "reading" and plain["text"] == "72" and plain["in_domain"] is True
    assert [d["label"] for d in plain["digits"]] == [7, 2]
    assert plain["digits"][1]["box"] == {"x": 160, "y": 24, "width": 112, "height": 112}
    assert by_id[made["digit"]]["kind"] == "digit" and by_id[made["digit"]]["text"] is None
    refused = service.get("/api/v1/records?refused=1").json()
    assert [r["request_id"] for r in refused["records"]] == [str(made["blotted"].request_id)]
    assert refused["filters"] == {"refused": "1"}
    assert refused["records"][0]["refused"][0]["in_domain"] is False
    bad = service.get("/api/v1/records?refused=perhaps")
    assert bad.status == 400 and bad.json()["error"] == "invalid_refused"


def test_records_page_shows_the_text_the_refusal_and_the_filter(service, made):
    page = service.get("/records").body.decode()
    assert '<span class="reading" title="7 at x=24 y=24 112x112 (99%); 2 at x=160' in page
    assert "1 mark refused" in page
    assert 'name="refused" value="1"' in page
    only = service.get("/records?refused=1").body.decode()
    assert "1 mark refused" in only and '<span class="reading" title="7 at' not in only
    assert 'name="refused" value="1" checked' in only


def test_a_reading_thumbnail_is_its_whole_input_with_a_box_per_mark(service, made):
    reply = service.get(f"/api/v1/records/{made['blotted'].request_id}/preview")
    assert reply.status == 200 and reply.content_type == "image/png"
    picture = cv2.imdecode(np.frombuffer(reply.body, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[0] == 112 and picture.shape[1] == round(112 * 432 / 160)  # the number's aspect kept
    green = (picture[:, :, 1] > 150) & (picture[:, :, 2] < 120) & (picture[:, :, 0] < 120)
    red = (picture[:, :, 2] > 180) & (picture[:, :, 1] < 100)
    assert green.sum() > 100 and red.sum() > 50  # two digit frames and one refused frame
    assert red[:, : picture.shape[1] * 2 // 3].sum() == 0  # the refused frame is around the blot, at the right
    one = service.get(f"/api/v1/records/{made['digit']}/preview")
    assert cv2.imdecode(np.frombuffer(one.body, np.uint8), cv2.IMREAD_GRAYSCALE).shape == (28, 28)


def test_a_reading_is_corrected_with_its_digits(service, made):
    rid = made["plain"].request_id
    reply = _post_json(service, rid, {"text": "73"})
    assert reply.status == 200, reply.body
    assert reply.json()["corrected_text"] == "73" and reply.json()["corrected_label"] is None
    assert service.store.get(rid).corrected_text == "73"
    for bad in ({"text": "7a"}, {"text": ""}, {"text": "7 3"}, {"text": ["7"]}, {"label": 7}, {}):
        reply = _post_json(service, rid, bad)
        assert reply.status == 400, bad
        assert reply.json()["error"] == "invalid_text" and "digits" in reply.json()["message"]
    form = service.post(
        f"/api/v1/records/{rid}/correction", b"text=0072", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status == 200 and form.json()["corrected_text"] == "0072"
    assert _post_json(service, rid, {"text": None}).json()["corrected_text"] is None
    # a one-digit record keeps its label corrections, and is not corrected by a text
    assert _post_json(service, made["digit"], {"text": "3"}).status == 400
    assert _post_json(service, made["digit"], {"label": 8}).json()["corrected_label"] == 8


def test_the_dashboard_counts_readings_and_refusals(service, made):
    totals = service.get("/api/v1/dashboard?model=digits&days=1").json()["totals"]
    assert totals["readings"] == 2 and totals["refused"] == 1 and totals["count"] == 3
