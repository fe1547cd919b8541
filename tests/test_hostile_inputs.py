"""More than 200 malformed or hostile requests against a real server: none gets a 5xx, each gets the
4xx that names its problem, nothing lands on disk under a client's name, and the server stays healthy."""

from __future__ import annotations

import json
import random
import re
import struct
import zlib

import cv2
import numpy as np
import pytest

from tests.service_helpers import digit_png, http_request, multipart, running_service

LIMIT = 256 * 1024  # a small upload limit keeps the oversized bodies cheap to send


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (decompression-bomb shape), with valid CRCs."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    )


def jpeg_with_size(width: int, height: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", np.full((16, 16), 255, np.uint8))
    data = bytearray(buffer.tobytes())
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def encoded(ext: str, image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(ext, image)
    assert ok
    return buffer.tobytes()


def build_cases() -> list[tuple[str, str, str, bytes | None, dict[str, str], int]]:
    """(label, method, path, body, headers, expected status)."""
    rng = random.Random(1234)
    good_png, _ = digit_png(0)
    jpeg = encoded(".jpg", cv2.imdecode(np.frombuffer(good_png, np.uint8), cv2.IMREAD_GRAYSCALE))
    cases: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = []
    api = "/api/v1/predict"
    endpoints = [
        api,
        "/digitRecognition/localService/v1.0",
        "/digitRecognition/localService/v1.1",
        "/uploads",
    ]

    def file_case(
        label: str,
        data: bytes,
        status: int,
        filename: str = "x.png",
        ctype: str = "image/png",
        path: str = api,
    ) -> None:
        body, headers = multipart([("file", filename, data, ctype)])
        cases.append((label, "POST", path, body, headers, status))

    for cut in sorted(rng.sample(range(1, len(good_png) - 1), 40)):
        file_case(f"png cut at {cut}", good_png[:cut], 400)
    for cut in sorted(rng.sample(range(1, len(jpeg) - 2), 25)):
        file_case(f"jpeg cut at {cut}", jpeg[:cut], 400)
    for path in endpoints:
        file_case(f"zero bytes {path}", b"", 400, path=path)
        file_case(f"text renamed .png {path}", b"just some text, honest\n" * 20, 400, path=path)
        file_case(f"100000x100000 png {path}", png_with_size(100000, 100000), 413, path=path)
        file_case(f"65000x65000 jpeg {path}", jpeg_with_size(65000, 65000), 413, path=path)
        body, headers = multipart([], {"comment": "no file here"})
        cases.append((f"multipart without file {path}", "POST", path, body, headers, 400))
        body, headers = multipart([("file", "big.png", b"\x89PNG" + b"\x00" * (LIMIT + 10), "image/png")])
        cases.append((f"body over the limit {path}", "POST", path, body, headers, 413))
        cases.append((f"no body {path}", "POST", path, None, {}, 400))
    for i in range(40):
        file_case(f"random bytes {i}", rng.randbytes(rng.randint(1, 4096)), 400)
    file_case("png signature only", b"\x89PNG\r\n\x1a\n", 400)
    file_case("jpeg markers only", b"\xff\xd8\xff\xd9", 400)
    file_case("html as png", b"<html><script>alert(1)</script></html>", 400)
    file_case(
        "svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
        415,
        "x.svg",
        "image/svg+xml",
    )
    file_case(
        "gif",
        bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"),
        415,
        "x.gif",
        "image/gif",
    )
    blank = encoded(".png", np.full((64, 64), 255, np.uint8))
    file_case("blank paper", blank, 400)
    file_case("flat grey", encoded(".png", np.full((64, 64), 128, np.uint8)), 400)
    file_case("1x1 png", encoded(".png", np.zeros((1, 1), np.uint8)), 400)
    hostile_names = [
        "../../../etc/passwd",
        "..\\..\\windows\\system32\\x.png",
        "a\x00b.png",
        "<script>alert(1)</script>.png",
        '"><img src=x onerror=alert(1)>.png',
        "ü" * 300 + ".png",
        "/absolute/path.png",
        "CON",
        ".",
        "..",
        "%2e%2e%2fx.png",
        "name\r\nX-Injected: 1.png",
        "😀" * 120,
    ]
    for name in hostile_names:  # bad content: the 4xx is about the content, whatever the name
        file_case(f"hostile name + text {name[:20]!r}", b"not an image", 400, filename=name)
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml", "video/mp4"):
        cases.append((f"content type {ctype}", "POST", api, b"abc", {"Content-Type": ctype}, 415))
    for raw in (
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"image": 5}',
        b'{"image": "data:image/png;base64,!!!"}',
        b'{"images": []}',
        b'{"images": "x"}',
        b'{"other": 1}',
        b"\xff\xfe\x00",
        json.dumps({"image": "data:image/png;base64,aGVsbG8="}).encode(),
    ):
        cases.append((f"json {raw[:30]!r}", "POST", api, raw, {"Content-Type": "application/json"}, 400))
    cases.append(("raw body text as image/png", "POST", api, b"nope", {"Content-Type": "image/png"}, 400))
    cases.append(("raw body over limit", "POST", api, b"\x00" * (LIMIT + 1), {"Content-Type": "image/png"}, 413))
    body, headers = multipart([("file", f"{i}.png", good_png, "image/png") for i in range(33)])
    cases.append(("33 files", "POST", api, body, headers, 413))
    body, headers = multipart([("file", "x.png", good_png, "image/png")])
    cases.append(("broken boundary", "POST", api, body[:-10], headers, 400))
    cases.append(("unknown model", "POST", api + "?model=../../etc", good_png, {"Content-Type": "image/png"}, 404))
    cases.append(("bad source", "POST", api + "?source=%3Cscript%3E", good_png, {"Content-Type": "image/png"}, 400))
    for method in ("PUT", "DELETE", "PATCH"):
        for path in endpoints + ["/api/v1/records", "/healthz"]:
            cases.append((f"{method} {path}", method, path, b"x", {"Content-Type": "image/png"}, 405))
    for path in (
        "/uploads/..%2f..%2fetc%2fpasswd",
        "/uploads/../records.sqlite3",
        "/static/../../webservice.py",
        "/static/%2e%2e/%2e%2e/setup.py",
        "/api/v1/records/%00",
        "/api/v1/records/%27%20OR%201=1%20--",
        "/uploads/" + "a" * 5000,
        "/api/v1/records/00000000-0000-0000-0000-000000000000/image",
        "/nothing-here",
        "/records/../../etc/passwd",
    ):
        cases.append((f"GET {path[:40]}", "GET", path, None, {}, 404))
    for query in (
        "limit=-1",
        "limit=1000",
        "limit=1e3",
        "limit=%00",
        "cursor=%ff%fe",
        "cursor=" + "z" * 3000,
    ):
        cases.append((f"records {query[:30]}", "GET", "/api/v1/records?" + query, None, {}, 400))
    return cases


CASES = build_cases()


def test_there_are_at_least_200_cases():
    assert len(CASES) >= 200


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # upload files on: the tests check that a client's name never reaches the file system
    with running_service(tmp_path_factory.mktemp("hostile"), max_upload_bytes=LIMIT, keep_upload_files=True) as svc:
        yield svc


def test_hostile_requests_get_their_4xx_and_the_server_stays_healthy(service):
    wrong = []
    for label, method, path, body, headers, expected in CASES:
        reply = http_request(method, service.url + path, body, headers)
        assert reply.status < 500, f"{label}: {reply.status} {reply.body[:200]!r}"
        if reply.status != expected:
            wrong.append(f"{label}: expected {expected}, got {reply.status} {reply.body[:160]!r}")
            continue
        if reply.content_type.startswith("application/json"):
            body_json = reply.json()
            assert set(body_json) == {"error", "message"} and body_json["message"], label
        assert b"Traceback" not in reply.body, label
    assert not wrong, "\n".join(wrong)
    assert service.get("/healthz").status == 200
    assert service.get("/readyz").status == 200
    good, _ = digit_png(3)
    assert service.predict(good).status == 200
    # nothing was stored for the refused requests, and stored files only ever have server-made names
    names = [p.name for p in (service.data_dir / "uploads").rglob("*") if p.is_file()]
    assert len(names) == 1 and re.fullmatch(r"[0-9a-f-]{36}\.png", names[0])


def test_hostile_file_names_with_a_good_image_are_kept_only_as_data(service):
    good, _ = digit_png(1)
    names = [
        "../../../etc/passwd",
        "a\x00b.png",
        "<script>alert(1)</script>.png",
        "ü" * 300 + ".png",
        "tab\there.png",
        "😀" * 120,
    ]
    for name in names:
        body, headers = multipart([("file", name, good, "image/png")])
        reply = http_request("POST", service.url + "/api/v1/predict", body, headers)
        assert reply.status == 200, (name, reply.body)
        kept = reply.json()["predictions"][0]["file_name"]
        assert kept is None or ("\x00" not in kept and "\r" not in kept and len(kept) <= 255)
    for path in (service.data_dir / "uploads").rglob("*"):
        if path.is_file():
            assert re.fullmatch(r"[0-9a-f-]{36}\.png", path.name), path
    assert not (service.data_dir / "etc").exists()
    page = service.get("/records").body.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
