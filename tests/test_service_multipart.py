"""The buffered multipart parser gives exactly what Werkzeug's parser gives, or hands the body to it.

Every case parses one body twice, with ``ServiceRequest`` (the service's) and Werkzeug's plain
``Request``, and compares the fields, the files (name, file name, content type, bytes) and the error.
"""

from __future__ import annotations

import io
import random

import pytest
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from digitrec.service import multipart
from digitrec.service.multipart import ServiceRequest, split_parts

BOUNDARY = "----digitrecBoundary7MA4YWxkTrZu0gW"


def body_of(parts: list[tuple[str, str | None, bytes, str | None]], boundary: str = BOUNDARY) -> bytes:
    """A multipart body as browsers and curl write it: (name, file name, content, content type)."""
    out = b""
    for name, filename, content, content_type in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def parse(cls: type[Request], body: bytes, boundary: str = BOUNDARY, **limits: int) -> object:
    environ = EnvironBuilder(
        method="POST",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    ).get_environ()
    environ["wsgi.input"] = io.BytesIO(body)
    request = cls(environ)
    for name, value in limits.items():
        setattr(request, name, value)
    try:
        files = [(key, f.filename, f.content_type, f.read()) for key, values in request.files.lists() for f in values]
        return {"form": list(request.form.items(multi=True)), "files": files}
    except Exception as exc:  # the same error type from both parsers is part of the contract
        return type(exc)


def assert_same(body: bytes, boundary: str = BOUNDARY, **limits: int) -> object:
    ours, theirs = parse(ServiceRequest, body, boundary, **limits), parse(Request, body, boundary, **limits)
    assert ours == theirs
    return ours


def test_a_curl_upload_is_split_without_werkzeug(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the fallback parser ran for a well-formed body")

    monkeypatch.setattr(multipart.FormDataParser, "_parse_multipart", refuse)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    result = parse(ServiceRequest, body_of([("file", "seven.png", png, "image/png"), ("version", None, b"3", None)]))
    assert result == {"form": [("version", "3")], "files": [("file", "seven.png", "image/png", png)]}


@pytest.mark.parametrize("seed", range(40))
def test_random_well_formed_bodies_match_werkzeug(seed: int) -> None:
    rng = random.Random(seed)
    parts = []
    for i in range(rng.randint(1, 5)):
        # binary content full of CR, LF and dashes: only the exact delimiter may end a part
        content = bytes(rng.choice(b"\r\n-ab\x00\xff") for _ in range(rng.randint(0, 300)))
        if rng.random() < 0.5:
            parts.append(
                (f"field{i}", None, "é ✓ text".encode() if rng.random() < 0.3 else content.hex().encode(), None)
            )
        else:
            parts.append(("file", rng.choice(["a.png", "ü.png", "x y.png", ""]), content, "image/png"))
    result = assert_same(body_of(parts))
    assert isinstance(result, dict) and len(result["form"]) + len(result["files"]) == len(parts)


@pytest.mark.parametrize(
    "body",
    [
        b"preamble text\r\n" + body_of([("file", "a.png", b"abc", "image/png")]),  # a preamble
        body_of([("file", "a.png", b"abc", "image/png")]) + b"epilogue",  # an epilogue
        body_of([("file", "a.png", b"abc", "image/png")])[:-12],  # truncated: no close delimiter
        body_of([("file", "a.png", b"abc", "image/png")]).replace(b"\r\n", b"\n"),  # bare LF line ends
        body_of([("file", "a.png", b"abc", "image/png")]).replace(
            b"Content-Type: image/png\r\n", b"Content-Type:\r\n image/png\r\n"
        ),
        body_of([("f", None, "é".encode("latin-1"), "text/plain; charset=iso-8859-1")]),  # a field with a charset
        body_of([("file", "a.png", b"abc", None)]).replace(b"form-data; ", b"attachment; "),
        body_of([("file", "a.png", b"abc", None)]).replace(b'name="file"; ', b""),  # no name
        body_of([("file", "a.png", b"abc", None)]).replace(b"Content-Disposition", b"X-Other"),  # no disposition
        body_of([("file", "na\xefve.png".encode("latin-1").decode("latin-1"), b"abc", None)]).replace(
            b"na\xc3\xafve", b"na\xefve"
        ),
        body_of([("file", "a.png", b"abc", None)]).replace(f"--{BOUNDARY}--".encode(), f"--{BOUNDARY}junk".encode()),
        f"--{BOUNDARY}--\r\n".encode(),  # an empty form
        b"",  # no body at all
        b"no boundary anywhere",
    ],
)
def test_unusual_and_broken_bodies_behave_as_in_werkzeug(body: bytes) -> None:
    assert_same(body)


def test_filename_star_and_escapes_match_werkzeug() -> None:
    body = body_of([("file", "a.png", b"abc", None)]).replace(
        b'filename="a.png"', b'filename="a\\"b.png"; filename*=UTF-8\'\'%C3%BC.png'
    )
    result = assert_same(body)
    assert isinstance(result, dict) and result["files"][0][1] == "ü.png"


def test_limits_stay_werkzeugs() -> None:
    many = body_of([(f"f{i}", None, b"x", None) for i in range(5)])
    assert assert_same(many, max_form_parts=3) is RequestEntityTooLarge
    big_field = body_of([("f", None, b"x" * 2000, None)])
    assert assert_same(big_field, max_form_memory_size=1000) is RequestEntityTooLarge
    # Files do not count as form memory. Werkzeug agrees when the file arrives in its 64 KB read chunks
    # (as every upload the service accepts does, its limit being 1 MB); a whole body in one chunk
    # smaller than that trips its buffer check, which this parser does not copy.
    big_file = body_of([("file", "a.png", b"x" * 2000, "image/png")])
    result = parse(ServiceRequest, big_file, max_form_memory_size=1000)
    assert isinstance(result, dict) and result["files"][0][3] == b"x" * 2000
    upload = body_of([("file", "a.png", b"x" * 300_000, "image/png")])
    assert isinstance(assert_same(upload, max_form_memory_size=100_000), dict)


def test_split_parts_refuses_what_it_does_not_understand() -> None:
    assert split_parts(b"", b"b") is None
    assert split_parts(b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx", b"b") is None  # truncated
    assert split_parts(b"--b--", b"b") == []
    parts = split_parts(b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n\r\n--b\r\n--b--', b"b")
    assert parts is None  # the second part has no headers at all


def test_plain_headers_are_read_without_parse_options_header(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parse_options_header ran for the headers browsers and curl write")

    monkeypatch.setattr(multipart, "parse_options_header", refuse)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    body = body_of([("file", "seven.png", png, "image/png"), ("version", None, b"3", None)])
    result = parse(ServiceRequest, body)
    assert result == {"form": [("version", "3")], "files": [("file", "seven.png", "image/png", png)]}


@pytest.mark.parametrize(
    "disposition",
    [
        'form-data; name="file"; filename="a%22b.png"',  # %22 is a quote in form data
        'form-data; name="file"; filename="a\\\\b.png"',  # a backslash escape
        'form-data; name="file"; filename=a.png',  # a token, not a quoted string
        'form-data; name="file"; filename=""',
        'form-data;name="file"; filename="a.png"',
        'Form-Data; name="file"; filename="a.png"',
        'form-data; name="file"; filename="a.png"; size=3',
    ],
)
def test_other_part_headers_are_read_as_werkzeug_reads_them(disposition: str) -> None:
    body = body_of([("file", "a.png", b"abc", "image/png")]).replace(
        b'form-data; name="file"; filename="a.png"', disposition.encode()
    )
    assert_same(body)


@pytest.mark.parametrize(
    "content_type",
    [
        f"multipart/form-data; boundary={BOUNDARY}",
        f"multipart/form-data;boundary={BOUNDARY}",
        f'multipart/form-data; boundary="{BOUNDARY}"',
        f"Multipart/Form-Data; boundary={BOUNDARY}",
        f"multipart/form-data; charset=utf-8; boundary={BOUNDARY}",
        f"multipart/form-data; boundary={BOUNDARY}; charset=utf-8",
    ],
)
def test_content_types_are_read_as_werkzeug_reads_them(content_type: str) -> None:
    body = body_of([("file", "a.png", b"abc", "image/png")])
    seen = []
    for cls in (ServiceRequest, Request):
        environ = EnvironBuilder(method="POST", data=body, headers={"Content-Type": content_type}).get_environ()
        request = cls(environ)
        files = [(key, f.filename, f.read()) for key, f in request.files.items(multi=True)]
        seen.append((request.mimetype, request.mimetype_params, files))
    assert seen[0] == seen[1]
    assert seen[0][2] == [("file", "a.png", b"abc")]


class Trickle(io.BytesIO):
    """A WSGI input that hands out at most 7 bytes per read, as a slow client's socket may."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))


def test_a_body_in_short_reads_is_read_whole_and_a_short_body_is_a_disconnect() -> None:
    body = body_of([("file", "a.png", b"abc" * 50, "image/png")])
    environ = EnvironBuilder(
        method="POST", data=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    ).get_environ()
    environ["wsgi.input"] = Trickle(body)
    assert ServiceRequest(environ).files["file"].read() == b"abc" * 50
    results = []
    for cls in (ServiceRequest, Request):
        environ["wsgi.input"] = Trickle(body[:-20])  # the client promised more than it sent
        try:
            results.append(cls(environ).files)
        except Exception as exc:
            results.append(type(exc))
    assert results[0] == results[1] == ClientDisconnected


def test_query_parameters_are_werkzeugs() -> None:
    for query in ("", "model=digits&source=canvas", "version=%20x&version=y", "a"):
        environ = EnvironBuilder(method="POST", query_string=query).get_environ()
        ours, theirs = ServiceRequest(environ).args, Request(environ).args
        assert list(ours.items(multi=True)) == list(theirs.items(multi=True))
