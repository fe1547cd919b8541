"""Bodies over the upload limit get a JSON 413 that the client can read, even without Expect: 100-continue.

The server here is the production one (``server.make_server``: waitress with the service's limits), on
127.0.0.1 and a free port; clients are Python's own http.client and urllib, which send the whole body
before reading the answer.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from service_helpers import recognizers, require_models

from digitrec.service import ServiceConfig, create_app
from digitrec.service.body_limit import drain_limit
from digitrec.service.server import make_server

MB = 1024 * 1024


@contextlib.contextmanager
def production_server(tmp_path, **settings) -> Iterator[tuple[str, int, object]]:
    require_models()
    config = ServiceConfig(
        host="127.0.0.1", port=0, data_dir=tmp_path, models=("digits",), lazy_models=(), threads=4, **settings
    )
    app = create_app(config, recognizers=recognizers("digits"))
    server = make_server(app, config)
    thread = threading.Thread(target=server.run, name="waitress-body-limit", daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", int(server.effective_port), app
    finally:
        server.close()
        thread.join(timeout=10)
        app.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with production_server(tmp_path_factory.mktemp("limit")) as running:
        yield running


def test_a_12_mb_body_without_expect_gets_a_readable_json_413_on_a_connection_that_stays_usable(server):
    host, port, _ = server
    body = b"\x89PNG\r\n\x1a\n" + b"\x00" * (12 * MB)
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("POST", "/api/v1/predict", body=body, headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        payload = response.read()
        assert response.status == 413
        assert response.headers["Content-Type"].startswith("application/json"), payload[:200]
        answer = json.loads(payload)
        assert answer["error"] == "request_entity_too_large"
        assert f"{len(body):,} bytes" in answer["message"] and "10,485,760" in answer["message"]
        # the body was read away, so the same connection serves the next request
        conn.request("GET", "/healthz")
        again = conn.getresponse()
        again.read()
        assert again.status == 200
    finally:
        conn.close()


def test_urllib_reads_the_413_as_json(server):
    host, port, _ = server
    request = urllib.request.Request(
        f"http://{host}:{port}/api/v1/predict",
        data=b"\x00" * (12 * MB),
        headers={"Content-Type": "application/octet-stream"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=60)
    assert raised.value.code == 413
    assert json.loads(raised.value.read())["error"] == "request_entity_too_large"


def raw_exchange(host: str, port: int, head: bytes) -> tuple[int, str, bytes]:
    """Send ``head`` on a raw socket and read the answer to the end."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    header, _, payload = raw.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    content_type = next(
        (line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type:")), ""
    )
    return int(lines[0].split()[1]), content_type, payload


def test_errors_waitress_answers_itself_are_json_too(server):
    host, port, _ = server
    # a declared length beyond what the server reads at all: waitress refuses it from the header alone
    huge = f"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {10**10}\r\n\r\n"
    status, content_type, payload = raw_exchange(host, port, huge.encode())
    assert status == 413 and content_type.startswith("application/json"), payload
    assert json.loads(payload)["error"] == "request_entity_too_large"
    # not HTTP: a header line without a colon
    status, content_type, payload = raw_exchange(host, port, b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    assert status == 400 and content_type.startswith("application/json"), payload
    assert json.loads(payload)["error"] == "bad_request"


def test_the_app_reads_an_oversized_body_away_under_any_wsgi_server(tmp_path):
    """The WSGI layer alone (what gunicorn calls): the body is consumed before the 413 is returned."""
    require_models()
    config = ServiceConfig(data_dir=tmp_path, models=("digits",), lazy_models=(), max_upload_bytes=64 * 1024)
    app = create_app(config, recognizers=recognizers("digits"))
    statuses: list[str] = []

    def start_response(status, headers, exc_info=None):
        statuses.append(status)

    try:
        for size, fully_read in ((100_000, True), (drain_limit(64 * 1024) + 1, False)):
            stream = io.BytesIO(b"\x00" * size)
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/api/v1/predict",
                "SERVER_NAME": "localhost",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "CONTENT_TYPE": "image/png",
                "CONTENT_LENGTH": str(size),
                "wsgi.input": stream,
                "wsgi.url_scheme": "http",
                "wsgi.errors": io.StringIO(),
            }
            body = b"".join(app(environ, start_response))
            assert statuses[-1].startswith("413"), statuses
            assert json.loads(body)["error"] == "request_entity_too_large"
            assert (stream.tell() == size) is fully_read  # beyond the drain limit it is not read at all
    finally:
        app.close()
