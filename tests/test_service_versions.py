"""Model versions in the service: listing, asking for a version, reload, polling, and swaps under load,
against a real waitress server on 127.0.0.1, real checkpoints (copies of the shipped one, one of them with
a changed final-layer bias) and the SQLite store."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from digitrec.model import checkpoints, versions
from digitrec.service.batcher import BatcherClosedError
from tests.model_versions import copy_flat, make_version
from tests.service_helpers import digit_png, multipart, require_models, running_service

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    """<tmp>/models/digits: the shipped model (flat), "v2" (same weights), "biased" (always says 3)."""
    monkeypatch.delenv(checkpoints.MODELS_ENV_VAR, raising=False)
    shipped = require_models()
    root = tmp_path / "models"
    copy_flat(shipped, root)
    make_version(shipped, root, "v2", metadata={"parent": shipped_id(), "corrections_used": 5})
    make_version(shipped, root, "biased", logit_shift={3: 25.0})
    return root


def shipped_id() -> str:
    return json.loads((require_models() / "digits" / "model.json").read_text())["version"]


def a_seven() -> bytes:
    for index in range(100):
        data, label = digit_png(index)
        if label == 7:
            return data
    raise AssertionError("no 7 in the first 100 test digits")


def test_models_endpoint_lists_versions_with_their_figures(tmp_path, models_root):
    with running_service(tmp_path / "data", models_dir=models_root, model_poll_seconds=0) as svc:
        (digits,) = svc.get("/api/v1/models").json()["models"]
        doc = svc.get("/api/v1/openapi.json").json()
    assert "post" in doc["paths"]["/api/v1/models/{name}/reload"]
    assert "version" in [p["name"] for p in doc["paths"]["/api/v1/predict"]["post"]["parameters"]]
    assert "versions" in doc["components"]["schemas"]["Model"]["properties"]
    assert digits["version"] == shipped_id() and digits["promoted_version"] == shipped_id()
    listed = {v["version"]: v for v in digits["versions"]}
    assert set(listed) == {shipped_id(), "v2", "biased"}
    assert listed[shipped_id()]["serving"] and listed[shipped_id()]["promoted"]
    assert not listed["v2"]["serving"] and listed["v2"]["parent"] == shipped_id()
    assert listed["v2"]["corrections_used"] == 5
    assert listed["v2"]["test_accuracy"] == pytest.approx(0.9965, abs=0.01)
    assert "path" not in listed["v2"], "the server's folders are not shown to clients"
    assert digits["served"][0]["version"] == shipped_id()


def test_a_request_can_ask_for_a_version(tmp_path, models_root):
    seven = a_seven()
    with running_service(tmp_path / "data", models_dir=models_root, model_poll_seconds=0) as svc:
        default = svc.predict(seven).json()
        assert default["model_version"] == shipped_id() and default["predictions"][0]["label"] == 7

        biased = svc.predict(seven, path="/api/v1/predict?model=digits&version=biased")
        assert biased.status == 200, biased.body
        (prediction,) = biased.json()["predictions"]
        assert prediction["model_version"] == "biased" and prediction["label"] == 3
        stored = svc.get(f"/api/v1/records/{prediction['id']}").json()
        assert stored["model_version"] == "biased" and stored["label"] == 3

        body, head = multipart([("file", "seven.png", seven, "image/png")], {"version": "v2"})
        form = svc.post("/api/v1/predict", body, head).json()
        assert form["predictions"][0]["model_version"] == "v2" and form["predictions"][0]["label"] == 7

        unknown = svc.predict(seven, path="/api/v1/predict?version=nope")
        assert unknown.status == 404 and unknown.json()["error"] == "unknown_version"
        assert sorted(unknown.json()["available_versions"]) == sorted([shipped_id(), "v2", "biased"])
        assert "v2" in unknown.json()["message"]
        bad = svc.predict(seven, path="/api/v1/predict?version=../../etc")
        assert bad.status == 400 and bad.json()["error"] == "invalid_version"
        # the serving version did not change because of these requests
        assert svc.predict(seven).json()["model_version"] == shipped_id()


def test_reload_endpoint_needs_the_token_and_switches(tmp_path, models_root):
    seven = a_seven()
    with running_service(tmp_path / "data", models_dir=models_root, model_poll_seconds=0, api_token=TOKEN) as svc:
        versions.promote("digits", "biased", models_root)
        assert svc.post("/api/v1/models/digits/reload").status == 401
        assert svc.predict(seven).json()["model_version"] == shipped_id(), "no poll: nothing changed yet"
        reply = svc.post("/api/v1/models/digits/reload", headers=AUTH)
        assert reply.status == 200, reply.body
        result = reply.json()
        assert result["changed"] and result["version"] == "biased" and result["previous"] == shipped_id()
        assert result["model_info"]["version"] == "biased"
        answer = svc.predict(seven).json()["predictions"][0]
        assert answer["model_version"] == "biased" and answer["label"] == 3
        again = svc.post("/api/v1/models/digits/reload", headers=AUTH).json()
        assert again["changed"] is False

        versions.rollback("digits", models_root)
        assert svc.post("/api/v1/models/digits/reload", headers=AUTH).json()["version"] == shipped_id()
        answer = svc.predict(seven).json()["predictions"][0]
        assert answer["model_version"] == shipped_id() and answer["label"] == 7
        loaded = svc.app.context.models.loaded_versions("digits")
        assert list(loaded) == [shipped_id()], "the replaced version was unloaded"
        served = svc.get("/api/v1/models", headers=AUTH).json()["models"][0]["served"]
        assert [s["version"] for s in served] == [shipped_id(), "biased", shipped_id()]
        assert svc.post("/api/v1/models/nothing/reload", headers=AUTH).status == 404
        metrics = svc.get("/metrics").body.decode()
        assert f'digitrec_model_serving{{model="digits",version="{shipped_id()}"}} 1.0' in metrics
        assert 'digitrec_model_serving{model="digits",version="biased"} 0.0' in metrics
        assert 'digitrec_model_swaps_total{model="digits",result="ok"} 2.0' in metrics


def test_the_poller_notices_a_promotion(tmp_path, models_root):
    with running_service(tmp_path / "data", models_dir=models_root, model_poll_seconds=0.2) as svc:
        versions.promote("digits", "v2", models_root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if svc.predict(a_seven()).json()["model_version"] == "v2":
                break
            time.sleep(0.1)
        else:
            pytest.fail("the service did not switch to the promoted version within 30 s")


def test_a_broken_promoted_version_leaves_the_old_one_serving(tmp_path, models_root):
    broken = models_root / "digits" / "broken"
    make_version(require_models(), models_root, "broken")
    (broken / "model.data-00000-of-00001").write_bytes(b"not a checkpoint")
    with running_service(tmp_path / "data", models_dir=models_root, model_poll_seconds=0) as svc:
        versions.promote("digits", "broken", models_root)
        reply = svc.post("/api/v1/models/digits/reload")
        assert reply.status == 500 and reply.json()["error"] == "reload_failed"
        assert "previous version still serves" in reply.json()["message"]
        assert svc.predict(a_seven()).json()["model_version"] == shipped_id()
        assert "broken" in svc.get("/api/v1/models").json()["models"][0]["reload_error"]
        assert 'digitrec_model_swaps_total{model="digits",result="failed"} 1.0' in svc.get("/metrics").body.decode()


def test_old_version_is_unloaded_only_after_its_last_request(tmp_path, models_root):
    import numpy as np

    with running_service(tmp_path / "data", models_dir=models_root, model_poll_seconds=0) as svc:
        registry = svc.app.context.models
        x = np.zeros((1, 784), np.float32)
        with registry.acquire("digits") as old:
            versions.promote("digits", "v2", models_root)
            assert registry.reload("digits")["version"] == "v2"
            assert old.retired and old.version == shipped_id()
            # ten probabilities and the domain score
            assert old.batcher.submit(x).result(10).shape == (1, 11), "still usable by its request"
        with pytest.raises(BatcherClosedError):
            old.batcher.submit(x)
        with registry.acquire("digits") as new:
            assert new.version == "v2"


def test_swapping_under_load_loses_no_request(tmp_path, models_root):
    """Clients predict without pause while versions are promoted back and forth: every answer is a 200
    from one of the two versions, and every answer's record is in the store."""
    images = [digit_png(i)[0] for i in range(8)]
    both = {shipped_id(), "v2"}
    with running_service(tmp_path / "data", models_dir=models_root, model_poll_seconds=0.3) as svc:
        stop = threading.Event()
        replies: list[tuple[int, str | None, str | None]] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            i = n
            while not stop.is_set():
                reply = svc.predict(images[i % len(images)])
                i += 1
                body = reply.json() if reply.status == 200 else {}
                prediction = (body.get("predictions") or [{}])[0]
                with lock:
                    replies.append((reply.status, prediction.get("model_version"), prediction.get("id")))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        try:
            for round_ in range(6):
                target = "v2" if round_ % 2 == 0 else shipped_id()
                versions.promote("digits", target, models_root)
                if round_ % 3 == 2:  # some swaps by the poller, the others by the endpoint
                    deadline = time.monotonic() + 20
                    while svc.app.context.models.get("digits").version != target and time.monotonic() < deadline:
                        time.sleep(0.05)
                else:
                    assert svc.post("/api/v1/models/digits/reload").status == 200
                assert svc.app.context.models.get("digits").version == target
                time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        statuses = {status for status, _, _ in replies}
        assert statuses == {200}, f"statuses seen: {statuses}"
        seen = {version for _, version, _ in replies}
        assert seen == both, f"versions seen: {seen}"
        assert len(replies) > 50
        store = svc.app.context.store
        missing = [rid for _, _, rid in replies if store.get(uuid.UUID(rid)) is None]
        assert not missing, f"{len(missing)} answered requests have no record"
        for rid in [r for _, _, r in replies][::10]:
            assert store.get(uuid.UUID(rid)).model_version in both


def test_with_a_token_only_its_holders_may_ask_for_another_version(tmp_path, models_root):
    seven = a_seven()
    with running_service(tmp_path / "data", models_dir=models_root, model_poll_seconds=0, api_token=TOKEN) as svc:
        refused = svc.predict(seven, path="/api/v1/predict?version=biased")
        assert refused.status == 401 and refused.json()["error"] == "unauthorized"
        assert list(svc.app.context.models.loaded_versions("digits")) == [shipped_id()], "nothing was loaded"
        body, head = multipart([("file", "seven.png", seven, "image/png")], {"version": "v2"})
        assert svc.post("/api/v1/predict", body, head).status == 401
        serving = svc.predict(seven, path=f"/api/v1/predict?version={shipped_id()}")
        assert serving.status == 200 and serving.json()["model_version"] == shipped_id()
        allowed = svc.predict(seven, path="/api/v1/predict?version=biased", headers=AUTH)
        assert allowed.status == 200 and allowed.json()["predictions"][0]["label"] == 3
