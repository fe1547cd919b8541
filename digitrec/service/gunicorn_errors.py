"""gunicorn's own error answers (a bad request line, headers over its limits) as the service's JSON.

gunicorn writes these itself, as an HTML page, before the app is called; the API promises
``{"error": ..., "message": ...}`` for every error. The gthread worker below renders them as JSON;
statuses and connection handling stay gunicorn's (it closes the connection after such an error).
Imported only in gunicorn workers (``worker_class`` in ``prefork``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """What ``gunicorn.util.write_error`` writes, with a JSON body instead of HTML."""
    code = re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_") or "error"
    body = json.dumps({"error": code, "message": mesg or reason}).encode("utf-8")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class JsonErrorThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, answering its own errors in JSON."""

    def init_process(self) -> None:
        # gunicorn's Worker.handle_error calls util.write_error; this worker process is ours alone.
        util.write_error = write_json_error
        super().init_process()
