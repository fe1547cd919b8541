"""Multipart form bodies split in one pass over the buffered body, with Werkzeug's parser as the fallback.

Werkzeug's parser streams: it scans each chunk with regular expressions and copies every part through a
stream object, about 110 µs for a one-file upload on the benchmark host, a tenth of a prediction's CPU.
The service's bodies are small and bounded (``max_upload_bytes``), so this parser reads the whole body
and cuts it with ``bytes.find`` (about 15 µs). It only accepts the strict form every browser and curl
send (RFC 7578: CRLF line ends, a Content-Disposition with a name on every part, UTF-8 headers, plain
UTF-8 fields); anything else, including a truncated or malformed body, is handed to Werkzeug's parser
unchanged, so limits, leniency and errors stay exactly Werkzeug's.
"""

from __future__ import annotations

import io
import typing as t

from werkzeug.datastructures import FileStorage, Headers, MultiDict
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header
from werkzeug.wrappers import Request

CRLF = b"\r\n"
MAX_BUFFERED_BODY = 16 * 1024 * 1024  # larger bodies stream through Werkzeug's parser

Part = tuple[Headers, str, "str | None", bytes]  # headers, name, filename (None for a field), content


def split_parts(body: bytes, boundary: bytes) -> list[Part] | None:
    """The parts of a strictly well-formed multipart body, or None when it is anything else."""
    dash = b"--" + boundary
    delimiter = CRLF + dash
    if body.startswith(dash):
        pos = len(dash)
    else:
        found = body.find(delimiter)  # a preamble before the first boundary
        if found < 0:
            return None
        pos = found + len(delimiter)
    parts: list[Part] = []
    while True:
        after = body[pos : pos + 2]
        if after == b"--":
            return parts  # the close delimiter; an epilogue after it is ignored, as Werkzeug does
        if after != CRLF:
            return None
        start = pos + 2
        headers_end = body.find(CRLF + CRLF, start)
        if headers_end < 0:
            return None
        part = _part(body[start:headers_end])
        if part is None:
            return None
        content_start = headers_end + 4
        content_end = body.find(delimiter, content_start)
        if content_end < 0:
            return None  # truncated: Werkzeug's parser reports it
        headers, name, filename = part
        parts.append((headers, name, filename, body[content_start:content_end]))
        pos = content_end + len(delimiter)


def _part(block: bytes) -> tuple[Headers, str, str | None] | None:
    """Headers, name and file name of one part's header block; None for anything unusual."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    headers = Headers()
    for line in text.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name or name[0] in " \t":  # folded or broken header lines: Werkzeug's job
            return None
        headers.add(name.strip(), value.strip())
    disposition, options = parse_options_header(headers.get("Content-Disposition"))
    name = options.get("name")
    if disposition != "form-data" or name is None:
        return None
    filename = options.get("filename")
    if filename is None and "Content-Type" in headers:
        return None  # a field with its own type or charset: Werkzeug decodes those
    return headers, name, filename


class BufferedFormDataParser(FormDataParser):
    """``FormDataParser`` whose multipart step tries ``split_parts`` on the buffered body first."""

    def _parse_multipart(
        self, stream: t.IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> tuple[t.IO[bytes], MultiDict[str, t.Any], MultiDict[str, t.Any]]:
        boundary = options.get("boundary", "")
        if not boundary or content_length is None or content_length > MAX_BUFFERED_BODY or not boundary.isascii():
            return super()._parse_multipart(stream, mimetype, content_length, options)
        body = stream.read()  # Werkzeug's LimitedStream: the whole body, short reads looped over
        parts = split_parts(body, boundary.encode("ascii"))
        if parts is not None and self._within_limits(parts):
            fields = [(name, data.decode("utf-8", "replace")) for _, name, filename, data in parts if filename is None]
            files = [
                (name, FileStorage(io.BytesIO(data), filename, name, headers=headers))
                for headers, name, filename, data in parts
                if filename is not None
            ]
            return stream, self.cls(fields), self.cls(files)
        return super()._parse_multipart(io.BytesIO(body), mimetype, len(body), options)

    def _within_limits(self, parts: list[Part]) -> bool:
        """Werkzeug's own limits; a body over them goes to its parser, which raises its usual 413."""
        if self.max_form_parts is not None and len(parts) > self.max_form_parts:
            return False
        limit = self.max_form_memory_size
        return limit is None or all(len(data) <= limit for _, _, filename, data in parts if filename is None)


class ServiceRequest(Request):
    """The service's request: Werkzeug's, with the buffered multipart parser."""

    form_data_parser_class = BufferedFormDataParser
