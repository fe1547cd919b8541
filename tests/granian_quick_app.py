"""A WSGI app factory that is ready at once, for tests of granian's master (``test_granian_master.py``).

Each worker leaves its ready file as ``granian_server.worker_app`` does, then answers every request
with its pid; no TensorFlow, so a worker is ready well within granian's 5.5 s crash-loop window.
"""

from __future__ import annotations

import os
from pathlib import Path

from digitrec.service.granian_server import READY_ENV, stop_with_master


def app():
    stop_with_master()
    (Path(os.environ[READY_ENV]) / str(os.getpid())).touch()
    body = str(os.getpid()).encode()

    def answer(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return answer
