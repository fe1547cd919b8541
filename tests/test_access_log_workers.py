"""`digitrec serve --workers 2 2>err.log` (and `2>>`): every access-log line arrives whole.

A real gunicorn master with two workers, its stderr a regular file opened as the shell opens it for
``2>`` (truncated, not in append mode) or ``2>>`` (append mode). 48 requests arrive at once from 48
connections while the workers also log; then SIGTERM, whose shutdown lines are written last. Every
request must have exactly one whole line, and the file must hold nothing torn.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import announced_port
from tests.service_helpers import REPO, require_models

REQUESTS = 48
ACCESS = re.compile(r'^127\.0\.0\.1 - - \[[^\]]+\] "GET (/\S*) HTTP/1\.1" 200 \d+ \d+\.\d{6}$')
EARLIER = "a line from an earlier run, kept by 2>>\n"


def start_workers(stderr_path: Path, mode: str, data_dir: Path) -> tuple[subprocess.Popen, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITREC_", "CASSANDRA_"))}
    env.update({"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    args = [sys.executable, "-m", "digitrec", "serve", "--workers", "2", "--threads", "8", "--port", "0"]
    args += ["--data-dir", str(data_dir), "--models-dir", str(require_models())]
    with open(stderr_path, mode) as stderr:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=REPO)
    port = announced_port(proc.stdout, 120)
    if port is None:
        proc.kill()
        raise AssertionError(f"no URL printed:\n{stderr_path.read_text(errors='replace')[-3000:]}")
    return proc, port


def wait_both_workers(port: int, timeout: float = 300) -> int:
    """Poll /readyz until both workers answered; how many polls were answered (each one is logged)."""
    seen: set[int] = set()
    answered = 0
    deadline = time.monotonic() + timeout
    while len(seen) < 2 and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=120) as reply:
                seen.add(int(json.loads(reply.read())["pid"]))
                answered += 1
        except OSError:
            pass
        time.sleep(0.1)
    assert len(seen) == 2, f"only workers {seen} answered /readyz"
    return answered


@pytest.mark.slow
@pytest.mark.parametrize("redirect", ["2>", "2>>"])
def test_every_access_log_line_arrives_whole_from_two_workers(redirect, tmp_path):
    log_path = tmp_path / "err.log"
    if redirect == "2>>":
        log_path.write_text(EARLIER)
    proc, port = start_workers(log_path, "ab" if redirect == "2>>" else "wb", tmp_path / "data")
    try:
        polls = wait_both_workers(port)
        start = threading.Barrier(REQUESTS)
        statuses: dict[int, int] = {}

        def get(i: int) -> None:
            start.wait()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?line={i}", timeout=60) as reply:
                reply.read()
                statuses[i] = reply.status

        threads = [threading.Thread(target=get, args=(i,)) for i in range(REQUESTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert statuses == {i: 200 for i in range(REQUESTS)}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    text = log_path.read_text(errors="replace")
    assert code == 0, text[-3000:]
    lines = text.splitlines()
    assert "\x00" not in text  # a hole left by a writer at a stale offset
    mentions = [line for line in lines if '"GET /' in line or "HTTP/1.1" in line]
    torn = [line for line in mentions if not ACCESS.match(line)]
    assert not torn, "torn access-log lines:\n" + "\n".join(torn[:10])
    paths = [ACCESS.match(line).group(1) for line in mentions]
    assert paths.count("/readyz") == polls, f"{paths.count('/readyz')} of {polls} /readyz lines"
    logged = sorted(int(p.split("=")[1]) for p in paths if p.startswith("/healthz?line="))
    assert logged == list(range(REQUESTS)), f"missing: {sorted(set(range(REQUESTS)) - set(logged))}"
    assert re.search(r"Shutting down|stopped|Worker exiting", text), text[-2000:]  # the lines written last
    if redirect == "2>>":
        assert text.startswith(EARLIER)
