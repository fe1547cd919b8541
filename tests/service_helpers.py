"""Shared pieces of the service tests: a real waitress server on an ephemeral 127.0.0.1 port, a small
HTTP client, a multipart encoder that can send any file name, and real MNIST test digits as PNGs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.client
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from digitrec.model.checkpoints import is_model_dir, shipped_models_dir

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("DIGITREC_DATASETS", REPO.parent / "shared" / "datasets"))


def models_dir() -> Path | None:
    """Where the test models are: $DIGITREC_TEST_MODELS_DIR, else the shipped data/trained_models."""
    for candidate in (os.environ.get("DIGITREC_TEST_MODELS_DIR"), shipped_models_dir()):
        if candidate and is_model_dir(Path(candidate) / "digits"):
            return Path(candidate)
    return None


def require_models() -> Path:
    found = models_dir()
    if found is None:
        pytest.skip("no trained digits model: data/trained_models/digits is missing (run `digitrec train`)")
    return found


@functools.cache
def recognizer(name: str) -> Any:
    """Each model loaded once per test process and shared by every app the tests build."""
    from digitrec.model.recognizer import DigitRecognizer

    return DigitRecognizer.load(name, models_dir=require_models())


def recognizers(*names: str) -> dict[str, Any]:
    return {name: recognizer(name) for name in names}


# --- images ------------------------------------------------------------------------------------------


@functools.cache
def mnist_test(dataset: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    from digitrec.learning.datasets import load_split

    try:
        return load_split(dataset, "test", DATASETS)
    except Exception as exc:  # turned into a clear skip reason
        pytest.skip(f"{dataset} test set not available under {DATASETS}: {exc}")


def paper_png(image28: np.ndarray, size: int = 112) -> bytes:
    """An MNIST image as a photo of paper would be: dark ink on white, larger than 28x28."""
    big = cv2.resize(255 - image28, (size, size), interpolation=cv2.INTER_CUBIC)
    ok, buffer = cv2.imencode(".png", big)
    assert ok
    return buffer.tobytes()


def digit_png(index: int, dataset: str = "mnist") -> tuple[bytes, int]:
    """PNG bytes of test image ``index`` and its true label."""
    images, labels = mnist_test(dataset)
    return paper_png(images[index]), int(labels[index])


def blank_png(size: int = 64) -> bytes:
    ok, buffer = cv2.imencode(".png", np.full((size, size), 255, np.uint8))
    assert ok
    return buffer.tobytes()


# --- HTTP --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def http_request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Reply:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path or "/", body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        conn.close()


def multipart(
    files: list[tuple[str, str | None, bytes, str]], fields: dict[str, str] | None = None
) -> tuple[bytes, dict[str, str]]:
    """Encode ``(field, filename, data, content type)`` parts by hand, so any file name can be sent."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in (fields or {}).items():
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
        )
    for field, filename, data, ctype in files:
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {ctype}\r\n\r\n".encode(
                "utf-8", "surrogateescape"
            )
            + data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_file(
    url: str,
    data: bytes,
    filename: str = "digit.png",
    ctype: str = "image/png",
    headers: dict[str, str] | None = None,
) -> Reply:
    body, head = multipart([("file", filename, data, ctype)])
    return http_request("POST", url, body, {**head, **(headers or {})})


# --- a real server -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Service:
    url: str
    app: Any
    data_dir: Path

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return http_request("GET", self.url + path, headers=headers)

    def post(self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        return http_request("POST", self.url + path, body, headers)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        return http_request(method, self.url + path, body, headers)

    def predict(
        self,
        data: bytes,
        path: str = "/api/v1/predict",
        filename: str = "digit.png",
        headers: dict[str, str] | None = None,
        ctype: str = "image/png",
    ) -> Reply:
        return post_file(self.url + path, data, filename, ctype, headers=headers)


@contextlib.contextmanager
def serve_app(app: Any, threads: int = 8, **options: Any) -> Iterator[str]:
    """Serve ``app`` with waitress on 127.0.0.1 and a free port; yield the base URL."""
    import waitress

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # one warning per queued request otherwise
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads, **options)
    closing = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:  # the loop may see the socket closed under it while shutting down
            if not closing.is_set():
                raise

    thread = threading.Thread(target=run, name="waitress-test", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        closing.set()
        server.close()
        thread.join(timeout=10)


@contextlib.contextmanager
def running_service(
    data_dir: Path,
    *,
    models: tuple[str, ...] = ("digits",),
    store: Any = None,
    environ: dict[str, str] | None = None,
    **config: Any,
) -> Iterator[Service]:
    """A real app (real models, SQLite store in ``data_dir`` unless ``environ`` names Cassandra) behind a
    real waitress server."""
    from digitrec.service import ServiceConfig, create_app

    require_models()
    settings = ServiceConfig(data_dir=data_dir, models=models, lazy_models=(), environ=environ or {}, **config)
    app = create_app(settings, store=store, recognizers=recognizers(*models))
    try:
        proxied = bool((environ or {}).get("DIGITREC_TRUSTED_PROXIES"))  # as server.make_server does
        with serve_app(app, clear_untrusted_proxy_headers=not proxied) as url:
            yield Service(url, app, data_dir)
    finally:
        app.close()
