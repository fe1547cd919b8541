"""granian's master as `digitrec serve` runs it (``granian_server.serve_granian``), with a trivial app.

The workers are ready in well under a second (``granian_quick_app``), so these tests reach what a model
load of several seconds hides: granian's crash-loop guard stops the master when a worker exits within
5.5 s of its start. A worker that got ready and then died (killed, OOM) must be replaced every time.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from processes import announced_port
from service_helpers import REPO

pytestmark = pytest.mark.skipif(os.name != "posix", reason="granian's workers are forked (POSIX)")
granian = pytest.importorskip("granian")

RUN_MASTER = """
import sys
from pathlib import Path
from digitrec.service.config import ServiceConfig
from digitrec.service.granian_server import serve_granian
config = ServiceConfig.from_env({}, port=0, data_dir=Path(sys.argv[1]), workers=int(sys.argv[2]), server="granian")
sys.exit(serve_granian(config, app_factory="granian_quick_app:app"))
"""


class QuickMaster:
    """A granian master with ``workers`` quick workers on an ephemeral 127.0.0.1 port."""

    def __init__(self, data_dir: Path, workers: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGITREC_")}
        env["PYTHONPATH"] = f"{REPO}{os.pathsep}{REPO / 'tests'}"
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-c", RUN_MASTER, str(data_dir), str(workers)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        port = announced_port(self.process.stdout, 60, self.lines)
        if port is None:
            self.stop()
            raise AssertionError("no URL printed:\n" + "".join(self.lines))
        self.port = port

    def answering_pid(self, other_than: int | None = None, timeout: float = 60.0) -> int:
        """The pid of a worker that answers, once one other than ``other_than`` does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the master stopped:\n" + "".join(self.lines[-40:])
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/")
                pid = int(conn.getresponse().read())
                if pid != other_than:
                    return pid
            except (OSError, http.client.HTTPException, ValueError):
                pass
            finally:
                conn.close()
            time.sleep(0.05)
        raise AssertionError(f"no worker other than {other_than} answered:\n" + "".join(self.lines[-40:]))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def age_seconds(pid: int) -> float:
    """How long ago process ``pid`` started."""
    start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process start times from /proc")
def test_a_worker_that_dies_right_after_getting_ready_is_replaced_every_time(tmp_path):
    """granian alone stops the master at the second of these deaths ("Worker crash loop detected")."""
    master = QuickMaster(tmp_path / "data", workers=1)
    try:
        pid = master.answering_pid()
        young = 0
        for _ in range(3):
            if age_seconds(pid) < 4.0:
                young += 1
            os.kill(pid, signal.SIGKILL)
            pid = master.answering_pid(other_than=pid)
        if not young:
            pytest.skip("every worker was older than 4 s when killed: this host is too slow to test the window")
        assert master.process.poll() is None, "".join(master.lines[-40:])
        assert "crash loop" not in "".join(master.lines)
    finally:
        code = master.stop()
    assert code == 0, "".join(master.lines[-40:])


def test_a_dead_workers_ready_file_is_removed_before_its_pid_can_come_back(tmp_path):
    """pid_max is 32768 on many hosts: a stale ready file under a reused pid would let a reload stop
    an old worker before its replacement had loaded anything."""
    master = QuickMaster(tmp_path / "data", workers=1)
    try:
        pid = master.answering_pid()
        ready_dirs = [p for p in Path(tempfile.gettempdir()).glob("digitrec-ready-*") if (p / str(pid)).exists()]
        assert len(ready_dirs) == 1, ready_dirs
        os.kill(pid, signal.SIGKILL)
        new = master.answering_pid(other_than=pid)
        assert (ready_dirs[0] / str(new)).exists()
        assert not (ready_dirs[0] / str(pid)).exists()
    finally:
        assert master.stop() == 0, "".join(master.lines[-40:])
