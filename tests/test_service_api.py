"""The JSON API, pages, probes and metrics, against a real waitress server on 127.0.0.1 with the real
digits model and the SQLite store in a temporary data directory."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest

from digitrec.model.checkpoints import is_model_dir
from digitrec.model.classes import FASHION_CLASSES
from tests.service_helpers import (
    blank_png,
    digit_png,
    multipart,
    recognizer,
    require_models,
    running_service,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("svc"), models=available_models()) as svc:
        yield svc


def available_models() -> tuple[str, ...]:
    return ("digits", "fashion") if is_model_dir(require_models() / "fashion") else ("digits",)


def gif_bytes() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (32, 32), 255).save(out, format="GIF")
    return out.getvalue()


def library_label(png: bytes) -> int:
    """What the library itself answers for these bytes: the service must agree with it."""
    return recognizer("digits").predict(png).label


def test_predict_multipart_answers_like_the_library_and_stores_a_record(service):
    png, truth = digit_png(0)
    reply = service.predict(png, filename="seven.png")
    assert reply.status == 200, reply.body
    assert reply.content_type.startswith("application/json")
    body = reply.json()
    (p,) = body["predictions"]
    assert p["label"] == library_label(png)
    assert p["model"] == "digits"
    assert p["name"] == str(p["label"])
    assert len(p["probabilities"]) == 10 and abs(sum(p["probabilities"]) - 1) < 1e-3
    assert p["confidence"] == pytest.approx(max(p["probabilities"]))
    assert p["elapsed_ms"] > 0 and body["elapsed_ms"] >= p["elapsed_ms"]
    assert p["file_name"] == "seven.png"
    preview = base64.b64decode(p["preview_png"].split(",", 1)[1])
    assert preview.startswith(b"\x89PNG")
    record = service.get(f"/api/v1/records/{p['id']}").json()
    assert record["label"] == p["label"] and record["source"] == "api" and record["file_name"] == "seven.png"


def test_predictions_are_right_on_real_mnist_test_digits(service):
    right = 0
    for index in range(20):
        png, truth = digit_png(index)
        right += service.predict(png).json()["predictions"][0]["label"] == truth
    assert right >= 17, f"only {right}/20 MNIST test digits recognised"


def test_predict_several_files_in_one_request(service):
    files = [digit_png(i) for i in (1, 2, 3)]
    body, headers = multipart([("file", f"d{i}.png", png, "image/png") for i, (png, _) in enumerate(files)])
    reply = service.post("/api/v1/predict?source=upload", body, headers)
    assert reply.status == 200, reply.body
    predictions = reply.json()["predictions"]
    assert [p["file_name"] for p in predictions] == ["d0.png", "d1.png", "d2.png"]
    assert [p["label"] for p in predictions] == [library_label(png) for png, _ in files]
    assert len({p["id"] for p in predictions}) == 3


def test_one_bad_file_among_good_ones_gets_its_own_error_and_the_good_ones_are_stored(service):
    good = [digit_png(i) for i in (11, 12)]
    body, headers = multipart(
        [
            ("file", "first.png", good[0][0], "image/png"),
            ("file", "x.png", b"just some text, not an image\n", "image/png"),
            ("file", "last.png", good[1][0], "image/png"),
            ("file", "drawing.gif", gif_bytes(), "image/gif"),
        ]
    )
    before = service.get("/api/v1/records?limit=100").json()["records"]
    reply = service.post("/api/v1/predict?source=upload", body, headers)
    assert reply.status == 207, reply.body  # some stored, some not: a client must look at "errors"
    answer = reply.json()
    assert [(p["index"], p["file_name"]) for p in answer["predictions"]] == [(0, "first.png"), (2, "last.png")]
    assert [p["label"] for p in answer["predictions"]] == [library_label(png) for png, _ in good]
    errors = {e["file_name"]: e for e in answer["errors"]}
    assert sorted(errors) == ["drawing.gif", "x.png"]
    assert (errors["x.png"]["index"], errors["x.png"]["status"], errors["x.png"]["error"]) == (1, 400, "invalid_image")
    assert errors["x.png"]["message"].startswith("x.png: not an image")
    assert "Error" not in errors["x.png"]["message"]  # no exception class names: the message is for people
    assert (errors["drawing.gif"]["status"], errors["drawing.gif"]["error"]) == (415, "unsupported_media_type")
    after = service.get("/api/v1/records?limit=100").json()["records"]
    new_ids = {r["request_id"] for r in after} - {r["request_id"] for r in before}
    assert new_ids == {p["request_id"] for p in answer["predictions"]}  # the good ones are recorded


def test_several_files_all_unusable_get_a_4xx_listing_each_file(service):
    body, headers = multipart(
        [("file", "a.txt", b"hello", "text/plain"), ("file", "blank.png", blank_png(), "image/png")]
    )
    reply = service.post("/api/v1/predict", body, headers)
    assert reply.status == 400, reply.body
    answer = reply.json()
    assert answer["error"] == "no_usable_image" and answer["predictions"] == []
    assert [(e["file_name"], e["error"]) for e in answer["errors"]] == [
        ("a.txt", "invalid_image"),
        ("blank.png", "no_digit_found"),
    ]
    assert "a.txt:" in answer["message"] and "blank.png:" in answer["message"]
    body, headers = multipart([("file", "a.txt", b"hello", "text/plain"), ("file", "b.txt", b"", "text/plain")])
    reply = service.post("/api/v1/predict", body, headers)
    assert reply.status == 400 and [e["message"] for e in reply.json()["errors"]] == [
        "a.txt: not an image: the data is not a PNG, JPEG, BMP, TIFF or WebP file",
        "b.txt: the file is empty (0 bytes)",
    ]


def test_a_single_bad_file_keeps_the_plain_error_answer(service):
    reply = service.predict(b"just text", filename="x.png")
    assert reply.status == 400
    assert set(reply.json()) == {"error", "message"} and reply.json()["error"] == "invalid_image"


def test_predictions_name_the_record_request_id_like_the_records_api_and_keep_id(service):
    prediction = service.predict(digit_png(13)[0]).json()["predictions"][0]
    assert prediction["request_id"] == prediction["id"]
    record = service.get(f"/api/v1/records/{prediction['request_id']}").json()
    assert record["request_id"] == prediction["request_id"]
    schema = service.get("/api/v1/openapi.json").json()["components"]["schemas"]
    assert "request_id" in schema["Prediction"]["properties"] and schema["Prediction"]["properties"]["id"]["deprecated"]
    assert "request_id" in schema["Record"]["properties"]
    assert "errors" in schema["PredictResponse"]["properties"]


def test_predict_raw_body_and_json_data_url(service):
    png, _ = digit_png(4)
    raw = service.post("/api/v1/predict", png, {"Content-Type": "image/png"})
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    as_json = service.post(
        "/api/v1/predict", json.dumps({"image": data_url}).encode(), {"Content-Type": "application/json"}
    )
    assert raw.status == 200 and as_json.status == 200, (raw.body, as_json.body)
    assert raw.json()["predictions"][0]["label"] == as_json.json()["predictions"][0]["label"] == library_label(png)


def test_stored_upload_is_the_server_encoded_png_under_a_server_made_name(tmp_path):
    with running_service(tmp_path, keep_upload_files=True) as service:  # upload files are opt-in
        png, _ = digit_png(5)
        p = service.predict(png, filename="../../etc/passwd.png").json()["predictions"][0]
        record = service.get(f"/api/v1/records/{p['id']}").json()
        assert re.fullmatch(r"uploads/\d{4}/\d{2}/\d{2}/" + p["id"] + r"\.png", record["image_path"])
        assert record["file_name"] == "../../etc/passwd.png"  # kept as data only
        stored = service.data_dir / record["image_path"]
        assert stored.is_file()
        image = service.get(f"/api/v1/records/{p['id']}/image")
        assert image.status == 200 and image.content_type == "image/png"
        assert image.body == stored.read_bytes() and image.body.startswith(b"\x89PNG")
        import hashlib

        assert hashlib.sha256(image.body).hexdigest() == record["image_sha256"]
    assert not list(service.data_dir.rglob("passwd*"))
    assert not list(stored.parent.glob(".upload-*"))  # no temp files left behind


def test_records_are_paged_newest_first(service):
    ids = [service.predict(digit_png(i)[0]).json()["predictions"][0]["id"] for i in range(6, 9)]
    first = service.get("/api/v1/records?limit=2").json()
    assert [r["request_id"] for r in first["records"]] == ids[::-1][:2]
    assert first["next_cursor"]
    second = service.get(f"/api/v1/records?limit=2&cursor={first['next_cursor']}").json()
    assert second["records"][0]["request_id"] == ids[0]
    assert service.get("/api/v1/records?limit=0").status == 400
    assert service.get("/api/v1/records?limit=abc").json()["error"] == "invalid_limit"
    assert service.get("/api/v1/records?cursor=not-a-cursor").status == 400


def test_correction_is_stored_and_validated(service):
    p = service.predict(digit_png(9)[0]).json()["predictions"][0]
    url = f"/api/v1/records/{p['id']}/correction"
    reply = service.post(url, json.dumps({"label": 4}).encode(), {"Content-Type": "application/json"})
    assert reply.status == 200, reply.body
    assert reply.json()["corrected_label"] == 4
    assert service.get(f"/api/v1/records/{p['id']}").json()["corrected_label"] == 4
    form = service.post(url, b"label=3", {"Content-Type": "application/x-www-form-urlencoded"})
    assert form.json()["corrected_label"] == 3
    for bad in (
        b'{"label": 10}',
        b'{"label": "x"}',
        b'{"label": true}',
        b'{"label": 2.5}',
        b"{}",
        b"[1]",
        b"{",
    ):
        r = service.post(url, bad, {"Content-Type": "application/json"})
        assert r.status == 400, bad
        assert set(r.json()) == {"error", "message"}
    missing = service.post(
        f"/api/v1/records/{uuid.uuid1()}/correction", b'{"label": 1}', {"Content-Type": "application/json"}
    )
    assert missing.status == 404


def test_unknown_records_are_404(service):
    for path in (
        f"/api/v1/records/{uuid.uuid1()}",
        "/api/v1/records/not-a-uuid",
        f"/api/v1/records/{uuid.uuid1()}/image",
        f"/uploads/{uuid.uuid1()}.png",
        "/uploads/x.png",
    ):
        reply = service.get(path)
        assert reply.status == 404, path
        assert reply.json()["error"] == "not_found"


def test_models_and_openapi(service):
    models = service.get("/api/v1/models").json()
    digits = models["models"][0]
    assert [m["name"] for m in models["models"]] == list(available_models())
    assert digits["name"] == "digits" and digits["state"] == "loaded"
    assert digits["class_names"] == [str(i) for i in range(10)]
    doc = service.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/v1/predict",
        "/api/v1/records",
        "/api/v1/records/{record_id}",
        "/api/v1/records/{record_id}/image",
        "/api/v1/records/{record_id}/correction",
        "/api/v1/models",
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
        "/digitRecognition/localService/v1.0",
        "/digitRecognition/localService/v1.1",
        "/uploads",
        "/uploads/{name}",
        "/uploads/record",
    ):
        assert path in doc["paths"], path


def test_probes(service):
    assert service.get("/healthz").json() == {"status": "ok"}
    ready = service.get("/readyz")
    assert ready.status == 200
    body = ready.json()
    assert body["status"] == "ready" and body["models"] == {name: "loaded" for name in available_models()}
    assert body["store"]["ok"] is True and body["store"]["spool_depth"] == 0


def test_metrics_count_requests_predictions_and_batches(service):
    before = service.get("/metrics").body.decode()
    png, _ = digit_png(10)
    label = service.predict(png).json()["predictions"][0]["label"]
    text = service.get("/metrics").body.decode()

    def value(metrics: str, name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", metrics, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    counter = f'digitrec_predictions_total{{label="{label}",model="digits"}}'
    assert value(text, counter) == value(before, counter) + 1
    requests = 'digitrec_http_requests_total{endpoint="api.predict",method="POST",status="200"}'
    assert value(text, requests) >= value(before, requests) + 1
    assert value(text, 'digitrec_batch_size_count{model="digits"}') > value(
        before, 'digitrec_batch_size_count{model="digits"}'
    )
    assert "digitrec_http_request_duration_seconds_bucket" in text
    assert re.search(r"^digitrec_spool_depth 0\.0$", text, re.MULTILINE)


def test_every_response_carries_security_headers(service):
    for reply in (
        service.get("/"),
        service.get("/api/v1/models"),
        service.get("/nope"),
        service.get("/static/app.js"),
    ):
        csp = reply.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert reply.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_and_static_assets_are_served_by_the_app(service):
    page = service.get("/")
    assert page.status == 200 and page.content_type.startswith("text/html")
    html = page.body.decode()
    assert ">predict it</button>" in html and ">clear it</button>" in html
    assert "<script>" not in html and "style=" not in html and "http://" not in html and "https://" not in html
    assert service.get("/static/app.js").content_type.startswith(("text/javascript", "application/javascript"))
    assert service.get("/static/app.css").content_type.startswith("text/css")
    assert service.get("/static/../app.py").status == 404
    assert service.get("/static/%2e%2e/app.py").status == 404


def test_records_page_escapes_what_clients_sent(service):
    png, _ = digit_png(11)
    service.predict(png, filename="<img src=x onerror=alert(1)>.png")
    page = service.get("/records").body.decode()
    assert "<img src=x onerror" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page


def test_errors_are_json_with_the_right_status(service):
    cases = [
        (service.post("/api/v1/predict"), 400, "no_file"),
        (
            service.post("/api/v1/predict", b"hello", {"Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
        ),
        (service.predict(b"this is not an image"), 400, "invalid_image"),
        (service.predict(blank_png()), 400, "no_digit_found"),
        (service.predict(gif_bytes(), filename="x.gif", ctype="image/gif"), 415, "unsupported_media_type"),
        (service.get("/api/v1/predict"), 405, "method_not_allowed"),
        (
            service.post("/api/v1/predict?model=cats", digit_png(0)[0], {"Content-Type": "image/png"}),
            404,
            "model_unavailable",
        ),
    ]
    for reply, status, error in cases:
        assert reply.status == status, reply.body
        body = reply.json()
        assert body["error"] == error and body["message"]
        assert "Traceback" not in reply.body.decode()


def test_the_clothing_model_answers_with_clothing_names(service):
    if "fashion" not in available_models():
        pytest.skip("no trained fashion model in the models folder")
    png, truth = digit_png(0, dataset="fashion")  # Fashion-MNIST test image 0: an ankle boot
    reply = service.post("/api/v1/predict?model=fashion", png, {"Content-Type": "image/png"})
    assert reply.status == 200, reply.body
    p = reply.json()["predictions"][0]
    assert p["model"] == "fashion" and p["name"] == FASHION_CLASSES[p["label"]]
    assert p["label"] == recognizer("fashion").predict(png).label
    assert service.get(f"/api/v1/records/{p['id']}").json()["model_name"] == "fashion"


def test_a_browser_gets_an_html_error_page_and_a_program_gets_json(service):
    html_reply = service.get("/no/such/page", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert html_reply.status == 404 and html_reply.content_type.startswith("text/html")
    assert b"<h1>404</h1>" in html_reply.body
    api_reply = service.get("/api/v1/nothing", headers={"Accept": "text/html"})
    assert api_reply.status == 404 and api_reply.json()["error"] == "not_found"
