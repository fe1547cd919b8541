"""One line per request in the Common Log Format, plus the time taken, on stderr.

    127.0.0.1 - - [01/Dec/2026:23:03:30 +0000] "POST /api/v1/predict?model=digits HTTP/1.1" 200 1234 0.001502

The fields are Apache's ``%h %l %u %t "%r" %>s %b`` (client, two unused ``-``, local time, request line,
status, body bytes or ``-``) and the seconds from the request's arrival to its last byte. Log tools that
read the Common Log Format read this; the last field is what nginx calls ``$request_time``.
waitress and every gunicorn worker write it the same way (``AccessLog``, ``stderr_writer``). Switched by
``DIGITREC_ACCESS_LOG`` / ``--no-access-log`` (see docs/operations.md).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_last_time: tuple[int, str] = (-1, "")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def _escape(text: str) -> str:
    """Quotes, backslashes and control characters as escapes, so a request cannot forge a log line."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clf_time(when: float) -> str:
    """``[01/Dec/2026:23:03:30 +0000]`` in local time, with English month names whatever the locale."""
    global _last_time
    second = int(when)
    cached = _last_time
    if cached[0] == second:  # many requests share a second; a race only recomputes the same text
        return cached[1]
    local = time.localtime(second)
    offset = local.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset), 60)
    text = (
        f"[{local.tm_mday:02d}/{_MONTHS[local.tm_mon - 1]}/{local.tm_year}:"
        f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} {sign}{hours:02d}{minutes:02d}]"
    )
    _last_time = (second, text)
    return text


_TOKEN_VALUE = re.compile(r"(?i)((?:^|[?&;])token=)[^&;#\s]*")


def redact_token(text: str) -> str:
    """``?token=<secret>`` (the sign-in address printed at start) as ``?token=<redacted>``: logs are read
    by more people than may hold the token."""
    return _TOKEN_VALUE.sub(r"\1<redacted>", text) if "token=" in text.lower() else text


def request_line(environ: dict[str, Any]) -> str:
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if not uri:
        uri = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/;=,@:+$!*'()~")
        if environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
    return f"{environ.get('REQUEST_METHOD', '-')} {redact_token(uri)} {environ.get('SERVER_PROTOCOL', '-')}"


def format_line(environ: dict[str, Any], status: str | int, size: int | None, seconds: float, when: float) -> str:
    """The log line for one request: ``status`` as WSGI gives it ("200 OK") or a number, ``size`` in
    body bytes (0 or None print as ``-``), ``seconds`` taken, ``when`` the arrival (``time.time()``)."""
    code = str(status).split(" ", 1)[0] or "-"
    return (
        f"{_escape(environ.get('REMOTE_ADDR') or '-')} - - {clf_time(when)} "
        f'"{_escape(request_line(environ))}" {_escape(code)} {size or "-"} {seconds:.6f}'
    )


class _LoggedBody:
    """The response body, passed through; logs the request when the server closes it (after the last
    byte), or with ``at_end`` as soon as the server has taken the last chunk."""

    def __init__(self, body: Iterable[bytes], done: Callable[[int], None], at_end: bool = False) -> None:
        self._body = body
        self._done = done
        self._at_end = at_end
        self._size = 0
        self._logged = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._size += len(chunk)
            yield chunk
        if self._at_end:
            self._log()

    def _log(self) -> None:
        if not self._logged:
            self._logged = True
            self._done(self._size)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._log()


class AccessLog:
    """WSGI middleware that writes ``format_line`` for every request, by default to stderr."""

    def __init__(self, app: Any, write: Callable[[str], None] | None = None, *, at_end: bool = False) -> None:
        self.app = app
        self.write = write or stderr_writer()
        self.at_end = at_end  # log when the server took the last chunk, not at close (see with_access_log)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        when, started = time.time(), time.perf_counter()
        status = ["500"]

        def capture(status_line: str, headers: list, exc_info: Any = None) -> Any:
            status[0] = status_line
            return start_response(status_line, headers, exc_info)

        def done(size: int) -> None:
            self.write(format_line(environ, status[0], size, time.perf_counter() - started, when))

        try:
            body = self.app(environ, capture)
        except BaseException:
            done(0)
            raise
        return _LoggedBody(body, done, self.at_end)


def with_access_log(app: Any, config: Any, *, at_end: bool = False) -> Any:
    """``app`` writing one line per request to stderr, unless ``config.access_log`` switched it off.

    ``at_end``: write it when the server has taken the body's last chunk. granian calls ``close`` later,
    from its own runtime after sending, and a worker that stops drops the calls still pending, with
    their lines (2 of 48 lines lost in tests/test_access_log_workers.py)."""
    return AccessLog(app, at_end=at_end) if config.access_log else app


def stderr_writer(fd: int = 2) -> Callable[[str], None]:
    """Whole lines to the inherited stderr descriptor ``fd``, each in one ``os.write``.

    Every serving process (waitress, or each gunicorn worker) writes to the one open file it inherited,
    so the lines cannot overwrite each other: with ``2>>`` every write is appended (O_APPEND), with
    ``2>`` the file offset they share moves past each line. Opening ``/dev/stderr`` again would make a
    second open file with its own offset, and lines written through the other would land on top of it.
    Not through ``sys.stderr`` or ``logging``: a buffer may split a line over two writes, and logging's
    records, handlers and locks cost more than the line itself (benchmarks/bench_access_log.py).
    """
    lock = threading.Lock()  # a partial write (a full pipe) is finished before another thread writes

    def write(line: str) -> None:
        data = (line + "\n").encode("utf-8", "backslashreplace")
        with lock:
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except OSError:  # stderr closed or gone: the request itself was answered
                pass

    return write
