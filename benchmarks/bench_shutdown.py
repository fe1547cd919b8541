"""How long `digitrec serve` takes to exit after SIGTERM when idle (what `docker stop` waits for).

Starts the server from a checkout (``--repo``, default this one) on a free port, answers one request,
waits until it is idle, sends SIGTERM and times until the process has exited. Repeats ``--runs`` times
and prints every time, so two checkouts can be compared in one sitting.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def one_run(repo: Path, idle: float) -> float:
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASSANDRA_")}
        env["PYTHONPATH"] = str(repo)
        proc = subprocess.Popen(
            [sys.executable, "-m", "digitrec", "serve", "--port", "0", "--data-dir", data],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            match = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())
            if not match:
                raise RuntimeError("the server did not print its URL")
            urllib.request.urlopen(match.group(1) + "/healthz", timeout=60).read()
            time.sleep(idle)
            sent = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            return time.perf_counter() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to run (default: this one)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle before SIGTERM (default 3)")
    args = parser.parse_args()
    times = [one_run(args.repo.resolve(), args.idle) for _ in range(args.runs)]
    print(f"{args.repo}: SIGTERM to exit " + ", ".join(f"{t:.2f}" for t in times) + " s")


if __name__ == "__main__":
    main()
