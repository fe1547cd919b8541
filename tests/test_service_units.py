"""Service parts that need no model: the micro-batcher, settings, stored uploads, input parsing."""

from __future__ import annotations

import datetime as dt
import importlib.util
import random
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from digitrec.errors import ConfigurationError
from digitrec.service.batcher import BatcherClosedError, MicroBatcher
from digitrec.service.config import ServiceConfig
from digitrec.service.inputs import decode_data_url
from digitrec.service.predictor import clean_file_name
from digitrec.service.responses import ApiError
from digitrec.service.uploads import UploadStore, parse_stored_name


class RowSums:
    """A stand-in model: each row's answer is its own sum, so mixed-up rows would show. Logs batch sizes."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append(len(x))
        if self.delay:
            threading.Event().wait(self.delay)
        return np.repeat(x.sum(axis=1, keepdims=True), 10, axis=1)


def test_concurrent_requests_share_model_calls_and_get_their_own_rows():
    model = RowSums(delay=0.01)
    batcher = MicroBatcher(model, max_batch=16, max_wait_ms=20)
    results: dict[int, float] = {}
    barrier = threading.Barrier(32)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = float(batcher.predict(np.full((1, 784), i / 784, np.float32))[0, 0])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert results == pytest.approx({i: float(i) for i in range(32)}, abs=1e-3)
    assert sum(model.calls) == 32
    assert max(model.calls) <= 16
    assert len(model.calls) < 32  # at least some requests shared a call


def test_a_lone_request_runs_after_the_wait_without_a_full_batch():
    model = RowSums()
    batcher = MicroBatcher(model, max_batch=64, max_wait_ms=1)
    out = batcher.predict(np.ones((3, 784), np.float32))
    batcher.close()
    assert out.shape == (3, 10) and model.calls == [3]


def test_a_lone_request_calls_the_model_in_its_own_thread_with_its_own_rows():
    seen: list[tuple[str, int]] = []

    def model(x: np.ndarray) -> np.ndarray:
        seen.append((threading.current_thread().name, len(x)))
        return np.zeros((len(x), 10), np.float32)

    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=50)
    with batcher.incoming():
        x = np.ones((2, 784), np.float32)
        future = batcher.submit(x)
    assert future.done() and future.result().shape == (2, 10)
    assert seen == [(threading.current_thread().name, 2)]


def test_requests_arriving_at_random_moments_are_all_answered_with_their_rows():
    """Leaders come and go while others queue: no request's rows may be left in the queue."""
    model = RowSums(delay=0.0005)
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=1)
    wrong: list[tuple[int, float]] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(60):
            value = seed * 1000 + i
            if rng.random() < 0.5:
                with batcher.incoming():
                    threading.Event().wait(rng.random() / 2000)
                    got = batcher.submit(np.full((1, 784), value / 784, np.float32)).result(timeout=10)
            else:
                got = batcher.predict(np.full((1, 784), value / 784, np.float32), timeout=10)
            if abs(float(got[0, 0]) - value) > 1e-2 * max(1, value / 1000):
                wrong.append((value, float(got[0, 0])))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    batcher.close()
    assert not any(t.is_alive() for t in threads) and not wrong
    assert sum(model.calls) == 8 * 60 and max(model.calls) <= 4


def test_a_failing_model_call_fails_its_requests_and_the_batcher_keeps_working():
    state = {"fail": True}

    def flaky(x: np.ndarray) -> np.ndarray:
        if state["fail"]:
            state["fail"] = False
            raise RuntimeError("model exploded")
        return np.zeros((len(x), 10), np.float32)

    batcher = MicroBatcher(flaky, max_batch=4, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.predict(np.zeros((1, 784), np.float32))
    assert batcher.predict(np.zeros((1, 784), np.float32)).shape == (1, 10)
    batcher.close()
    with pytest.raises(BatcherClosedError):
        batcher.predict(np.zeros((1, 784), np.float32))


def test_config_reads_environment_and_arguments_win():
    env = {
        "DIGITREC_HOST": "0.0.0.0",
        "DIGITREC_PORT": "8080",
        "DIGITREC_DATA_DIR": "/srv/data",
        "DIGITREC_API_TOKEN": "t",
        "DIGITREC_THREADS": "4",
        "DIGITREC_MAX_UPLOAD_BYTES": "2048",
    }
    cfg = ServiceConfig.from_env(env, port=9000)
    assert (cfg.host, cfg.port, str(cfg.data_dir), cfg.api_token, cfg.threads, cfg.max_upload_bytes) == (
        "0.0.0.0",
        9000,
        "/srv/data",
        "t",
        4,
        2048,
    )
    assert cfg.url == "http://localhost:9000/"
    defaults = ServiceConfig.from_env({})
    assert (defaults.host, defaults.port, str(defaults.data_dir), defaults.api_token) == (
        "127.0.0.1",
        5000,
        "data",
        None,
    )
    assert defaults.max_upload_bytes == 10 * 1024 * 1024


@pytest.mark.parametrize(
    "env",
    [
        {"DIGITREC_PORT": "http"},
        {"DIGITREC_PORT": "70000"},
        {"DIGITREC_THREADS": "0"},
        {"DIGITREC_BATCH_WAIT_MS": "soon"},
        {"DIGITREC_RELEASE_LIBRARY_PAGES": "maybe"},
    ],
)
def test_bad_settings_name_the_problem(env):
    with pytest.raises(ConfigurationError):
        ServiceConfig.from_env(env)


def test_the_default_server_is_granian_on_posix_and_waitress_on_windows(tmp_path, monkeypatch):
    assert ServiceConfig(data_dir=tmp_path).http_server == "granian"
    assert ServiceConfig(data_dir=tmp_path, workers=2).http_server == "granian"
    assert ServiceConfig(data_dir=tmp_path, server="waitress").http_server == "waitress"
    assert ServiceConfig(data_dir=tmp_path, server="gunicorn", workers=2).http_server == "gunicorn"
    real_find_spec = importlib.util.find_spec
    # a platform granian has no wheel for: gunicorn
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "granian" else real_find_spec(name))
    assert ServiceConfig(data_dir=tmp_path, workers=2).http_server == "gunicorn"
    monkeypatch.setattr(sys, "platform", "win32")
    assert ServiceConfig(data_dir=tmp_path).http_server == "waitress"


def test_models_come_from_the_data_volume_else_the_shipped_copy(tmp_path, monkeypatch):
    from digitrec.model import checkpoints, versions

    monkeypatch.delenv(checkpoints.MODELS_ENV_VAR, raising=False)
    config = ServiceConfig(data_dir=tmp_path)
    assert config.trained_models_dir == tmp_path / "trained_models"
    # the folder does not exist yet: the shipped model serves
    assert versions.promoted_version("digits", config.trained_models_dir).shipped
    assert ServiceConfig(data_dir=tmp_path, models_dir=tmp_path / "m").trained_models_dir == tmp_path / "m"


def test_uploads_are_written_atomically_under_dated_server_names(tmp_path):
    store = UploadStore(tmp_path)
    rid = uuid.uuid1()
    when = dt.datetime(2024, 2, 29, 23, 59, tzinfo=dt.timezone.utc)
    path, sha = store.save(rid, when, b"\x89PNG fake")
    assert path == f"uploads/2024/02/29/{rid}.png"
    assert (tmp_path / path).read_bytes() == b"\x89PNG fake" and len(sha) == 64
    assert [p.name for p in (tmp_path / "uploads/2024/02/29").iterdir()] == [f"{rid}.png"]
    assert store.open_path(path) == (tmp_path / path).resolve()
    assert store.open_path("../records.sqlite3") is None
    assert store.open_path("uploads/../../etc/passwd") is None


def test_an_upload_folder_removed_while_serving_is_made_again(tmp_path):
    import shutil

    store = UploadStore(tmp_path)
    when = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
    store.save(uuid.uuid1(), when, b"first")
    shutil.rmtree(tmp_path / "uploads" / "2024")  # an operator cleaning up old uploads
    path, _ = store.save(uuid.uuid1(), when, b"second")
    assert (tmp_path / path).read_bytes() == b"second"
    assert not [p for p in (tmp_path / "uploads/2024/03/01").iterdir() if p.name.endswith(".tmp")]


def test_library_page_release_can_be_turned_off():
    assert ServiceConfig.from_env({}).release_library_pages is True
    assert ServiceConfig.from_env({"DIGITREC_RELEASE_LIBRARY_PAGES": "0"}).release_library_pages is False


def test_stored_names_are_only_record_ids():
    rid = uuid.uuid1()
    assert parse_stored_name(f"{rid}.png") == rid == parse_stored_name(str(rid))
    for bad in ("../x.png", f"{rid}.png/..", "seven.png", f"{rid}.jpg", "", f"{rid}.png\x00"):
        assert parse_stored_name(bad) is None


def test_client_file_names_are_cleaned_for_the_record():
    assert clean_file_name("a\x00b\nc.png") == "abc.png"
    assert clean_file_name("é" * 300) == "é" * 255
    assert clean_file_name("") is None and clean_file_name("\x00") is None
    assert clean_file_name("digit 7.png") == "digit 7.png" and clean_file_name("a" * 300) == "a" * 255
    assert clean_file_name("a\tb.png") == "ab.png"


def test_a_json_answer_carries_its_length_and_headers_and_a_head_gets_no_body():
    from werkzeug.test import Client

    from digitrec.service.responses import json_response

    def app(environ, start_response):
        return json_response({"label": "é"}, headers={"X-Extra": "1"})(environ, start_response)

    client = Client(app)
    posted = client.post("/api/v1/predict")
    assert posted.data == '{"label":"é"}'.encode() and posted.headers["Content-Length"] == str(len(posted.data))
    assert posted.headers["X-Extra"] == "1" and posted.mimetype == "application/json"
    head = client.head("/api/v1/predict")
    assert head.data == b"" and head.headers["Content-Length"] == str(len(posted.data))


def test_data_urls_decode_or_give_a_400():
    assert decode_data_url("data:image/png;base64,aGVsbG8=") == b"hello"
    for bad in ("data:image/png;base64,@@@", 42, None):
        with pytest.raises(ApiError) as info:
            decode_data_url(bad)
        assert info.value.status == 400


def test_a_batch_waits_for_announced_requests_but_a_lone_one_does_not():
    model = RowSums()
    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=2000)
    started = time.perf_counter()
    assert batcher.predict(np.ones((1, 784), np.float32)).shape == (1, 10)
    assert time.perf_counter() - started < 1.0  # nobody else announced: no 2 s wait
    announced, second = threading.Event(), {}

    def slow_request() -> None:  # announces itself, then "decodes" for 50 ms before submitting
        with batcher.incoming():
            announced.set()
            time.sleep(0.05)
            second["result"] = batcher.submit(np.full((1, 784), 2 / 784, np.float32)).result(timeout=5)

    thread = threading.Thread(target=slow_request)
    thread.start()
    announced.wait(5)
    started = time.perf_counter()
    first = batcher.predict(np.ones((1, 784), np.float32))  # leads the batch and waits for the announced one
    waited = time.perf_counter() - started
    thread.join(5)
    assert 0.03 < waited < 1.5
    assert [first[0, 0], second["result"][0, 0]] == pytest.approx([784.0, 2.0])
    assert model.calls == [1, 2]


def test_a_request_that_arrives_during_a_model_call_is_run_by_the_next_leader():
    model = RowSums(delay=0.05)
    batcher = MicroBatcher(model, max_batch=8, max_wait_ms=0)
    results = {}

    def request(i: int) -> None:
        results[i] = float(batcher.predict(np.full((1, 784), i / 784, np.float32))[0, 0])

    threads = [threading.Thread(target=request, args=(i,)) for i in range(6)]
    threads[0].start()
    time.sleep(0.01)  # the first request is inside its model call now
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(5)
    assert results == pytest.approx({i: float(i) for i in range(6)}, abs=1e-3)
    assert model.calls[0] == 1 and sum(model.calls) == 6 and len(model.calls) <= 3


def test_closing_the_registry_waits_for_a_model_still_loading():
    """Shutdown must not leave a thread inside TensorFlow: the interpreter would abort the process."""
    from digitrec.service.models import ModelRegistry, load_recognizer

    started = threading.Event()

    def slow_loader(name, models_dir):  # the real loader, after a pause that keeps it busy at close()
        started.set()
        time.sleep(0.5)
        return load_recognizer(name, models_dir)

    registry = ModelRegistry(
        ["digits"], models_dir=None, batch_size=4, batch_wait_ms=0.0, lazy=["digits"], loader=slow_loader
    )
    registry.start()
    assert started.wait(10)
    registry.close()
    assert registry.state("digits") == "loaded"
    assert not any(thread.is_alive() for thread in threading.enumerate() if thread.name == "load-digits")
