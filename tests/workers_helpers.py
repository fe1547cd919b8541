"""A real `digitrec serve --workers N` (gunicorn or granian master + workers) on an ephemeral 127.0.0.1 port."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from processes import announced_port
from service_helpers import REPO, http_request, require_models


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def maps_mention(pid: int, word: str) -> bool:
    """True when a shared library whose path contains ``word`` is mapped into process ``pid``."""
    return word in Path(f"/proc/{pid}/maps").read_text()


class WorkersServer:
    """The service as an operator starts it: `python -m digitrec serve --workers N`."""

    def __init__(
        self,
        data_dir: Path,
        workers: int = 2,
        threads: int = 4,
        env: dict[str, str] | None = None,
        models_dir: Path | None = None,
        server: str = "gunicorn",
    ):
        models = models_dir or require_models()
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITREC_", "CASSANDRA_"))}
        environ.update({"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
        args = [sys.executable, "-m", "digitrec", "serve", "--workers", str(workers), "--threads", str(threads)]
        args += ["--port", "0", "--data-dir", str(data_dir), "--models-dir", str(models), "--server", server]
        self.server = server
        self.process = subprocess.Popen(args, env=environ, stdout=subprocess.PIPE, stderr=self.log, cwd=REPO)
        self.port = self._read_port()
        self.workers = workers

    def _read_port(self, timeout: float = 120.0) -> int:
        self.stdout_lines: list[str] = []
        port = announced_port(self.process.stdout, timeout, self.stdout_lines)
        if port is None:
            self.stop()
            raise AssertionError(f"no URL printed within {timeout:.0f} s:\n{self.output()}")
        return port

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        return children(self.pid)

    def wait_worker_pids(self, done: Callable[[set[int]], bool], timeout: float = 180.0) -> set[int]:
        """The master's worker pids once ``done(pids)`` holds (or as they are when ``timeout`` ran out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = set(self.worker_pids())
            if done(pids):
                return pids
            time.sleep(0.2)
        return set(self.worker_pids())

    def output(self) -> str:
        """What the server printed: stdout lines, then its log (stderr)."""
        if not self.log.closed:
            self.log.flush()
        return "".join(self.stdout_lines) + self.log_path.read_text(errors="replace")

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        reply = http_request(method, f"http://127.0.0.1:{self.port}{path}", body, headers)
        return reply.status, reply.body

    def wait_workers_ready(self, expected: set[int] | None = None, timeout: float = 180.0) -> set[int]:
        """Poll /readyz on new connections until ``workers`` distinct pids (or all of ``expected``) said
        ready; returns their pids."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = set(self.worker_pids())
            want = expected if expected is not None else live
            if len(live) == self.workers and want <= seen:
                return seen & live
            try:
                status, body = self.request("GET", "/readyz")
                if status == 200:
                    seen.add(json.loads(body)["pid"])
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"workers not ready within {timeout:.0f} s (saw {seen}):\n{self.output()[-4000:]}")

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for pid in self.worker_pids():
                    os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
        if not self.log.closed:
            self.log.close()
        return self.process.returncode
