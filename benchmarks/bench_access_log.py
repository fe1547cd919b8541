"""What the access log costs per request: the same small WSGI app called with and without ``AccessLog``.

The line is written the way the server writes it (``stderr_writer``), to /dev/null so the terminal's
speed does not count. Both sides run interleaved in one process, several rounds, and
the best round of each is reported, with the difference in microseconds per request.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from typing import Any

from digitrec.service.access_log import AccessLog, stderr_writer

BODY = b'{"model":"digits","predictions":[{"label":7}]}' * 8


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def environ() -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/predict",
        "QUERY_STRING": "model=digits",
        "REQUEST_URI": "/api/v1/predict?model=digits",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
    }


def serve_once(wsgi: Any) -> int:
    """What a WSGI server does with one request: call, iterate the body, close it."""
    body = wsgi(environ(), lambda status, headers, exc_info=None: None)
    size = sum(len(chunk) for chunk in body)
    close = getattr(body, "close", None)
    if close is not None:
        close()
    return size


def per_request_us(wsgi: Any, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        serve_once(wsgi)
    return (time.perf_counter() - started) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="requests per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of each, interleaved (default 7)")
    args = parser.parse_args()

    devnull = os.open(os.devnull, os.O_WRONLY)
    logged = AccessLog(app, stderr_writer(devnull))

    plain_runs, logged_runs = [], []
    for _ in range(args.rounds):
        plain_runs.append(per_request_us(app, args.requests))
        logged_runs.append(per_request_us(logged, args.requests))
    plain, with_log = min(plain_runs), min(logged_runs)
    os.close(devnull)
    print(f"without access log: {plain:.2f} us per request (best of {args.rounds} x {args.requests})")
    print(f"with access log:    {with_log:.2f} us per request")
    print(f"access log costs:   {with_log - plain:.2f} us per request")


if __name__ == "__main__":
    main()
