"""Several real service processes behind a real HAProxy (Debian's package) on 127.0.0.1, without Docker.

Used by tests/test_cluster.py and benchmarks/bench_cluster.py. Each replica is ``webservice.py`` in its
own process, all sharing one data folder (one SQLite file, or Cassandra when CASSANDRA_CONTACT_POINTS is
set), each with its own spool file, as in container/docker-compose.cluster.yml.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from processes import stop_process

REPO = Path(__file__).resolve().parent.parent


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Replica:
    """One service process; ``start`` again reuses its port (a replica coming back)."""

    name: str
    data_dir: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        env = {**self.env, "DIGITREC_SPOOL_PATH": f"spool/{self.name}.sqlite3"}
        args = [sys.executable, str(REPO / "webservice.py"), "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(r"http://[^:/]+:(\d+)/? ", line)
            if match:
                self.port = int(match.group(1))
                # Keep reading its output so a full pipe never blocks the server.
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                if self.wait_ready(deadline):  # gunicorn's master prints the URL before its worker loads the models
                    return
                break
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"replica {self.name} did not start")

    def wait_ready(self, deadline: float) -> bool:
        """Until ``/readyz`` answers 200 (every model loaded), or False at ``deadline``."""
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as reply:
                    if reply.status == 200:
                        return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        return False

    def kill9(self) -> None:
        """SIGKILL the replica's process and its children (a gunicorn worker), as when its container dies."""
        if self.proc is not None and self.proc.poll() is None:
            pid = self.proc.pid
            try:
                children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except OSError:
                children = []
            for target in (pid, *children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class HAProxy:
    """HAProxy in the foreground with a generated config: round robin over the replicas, each checked with
    ``GET /readyz`` every ``inter_ms`` and taken out after ``fall`` failures; stats on a Unix socket."""

    def __init__(self, replicas: list[Replica], workdir: Path, inter_ms: int = 500, fall: int = 2) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
        self.inter_ms, self.fall = inter_ms, fall
        self.port = free_port()
        self.socket_path = workdir / "haproxy.sock"
        self.config_path = workdir / "haproxy.cfg"
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port}" for r in replicas)
        self.config_path.write_text(
            f"""global
    maxconn 4096
    stats socket {self.socket_path} mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch 1
frontend http
    bind 127.0.0.1:{self.port}
    default_backend digitrec
backend digitrec
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    http-response set-header X-Served-By %[srv_name]
    default-server check inter {inter_ms}ms fall {fall} rise 2
{servers}
""",
            encoding="utf-8",
        )
        self.proc = subprocess.Popen(
            [binary, "-db", "-f", str(self.config_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 10
        while not self.socket_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: {self.proc.stderr.read() if self.proc.stderr else ''}")
            time.sleep(0.05)
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, text: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_states(self) -> dict[str, str]:
        """Server name -> HAProxy's status (UP, DOWN, "UP 1/2", ...) from ``show stat``."""
        lines = [line for line in self.command("show stat").splitlines() if line]
        header = lines[0].lstrip("# ").split(",")
        status, name, proxy = header.index("status"), header.index("svname"), header.index("pxname")
        states = {}
        for line in lines[1:]:
            cells = line.split(",")
            if cells[proxy] == "digitrec" and cells[name] not in ("FRONTEND", "BACKEND"):
                states[cells[name]] = cells[status]
        return states

    def wait_for(self, name: str, state: str, timeout: float) -> float:
        """Seconds until ``name`` reaches ``state`` (polled every 20 ms); TimeoutError after ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.server_states().get(name) == state:
                return time.monotonic() - started
            time.sleep(0.02)
        raise TimeoutError(f"{name} not {state} after {timeout} s: {self.server_states()}")

    def stop(self) -> None:
        stop_process(self.proc, grace=10)


def replica_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every replica: this one's (Cassandra settings included), the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGITREC_")}
    env.update({"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "DIGITREC_LAZY": ""})
    if os.environ.get("DIGITREC_DATASETS"):
        env["DIGITREC_DATASETS"] = os.environ["DIGITREC_DATASETS"]
    env.update(extra or {})
    return env


@contextlib.contextmanager
def cluster(
    workdir: Path, replicas: int = 3, env: dict[str, str] | None = None, inter_ms: int = 500
) -> Iterator[tuple[list[Replica], HAProxy]]:
    """``replicas`` service processes on one data folder, started together, behind HAProxy; all UP on exit
    of the ``with`` line."""
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    started: list[Replica] = [Replica(f"r{i + 1}", data_dir, replica_env(env)) for i in range(replicas)]
    proxy = None
    try:
        errors: list[BaseException] = []

        def start(replica: Replica) -> None:
            try:
                replica.start()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(r,)) for r in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        proxy = HAProxy(started, workdir, inter_ms=inter_ms)
        for replica in started:
            proxy.wait_for(replica.name, "UP", timeout=30)
        yield started, proxy
    finally:
        if proxy is not None:
            proxy.stop()
        for replica in started:  # all at once: each takes a few seconds to shut down cleanly
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.terminate()
        for replica in started:
            replica.stop()
