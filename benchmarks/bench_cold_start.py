"""Cold start: from `python webservice.py` to the first answered prediction.

Each run starts a fresh process with a fresh data directory on an ephemeral 127.0.0.1 port and polls
``POST /api/v1/predict`` with a real digit until it answers 200. Reported: the time until the server
printed its URL and until the first 200 (median and worst of ``--runs``), and the RSS when idle.

The server is `webservice.py --workers N` (N = 1 by default; on POSIX gunicorn's master + N workers): the
URL is printed by the master at once, and the first prediction is answered once a worker has loaded
the models; idle RSS is summed over the workers (the master's is reported apart).

Usage: python benchmarks/bench_cold_start.py [--runs 3] [--workers N] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import REPO, digit_png, multipart, rss_mb  # noqa: E402


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def one_run(body: bytes, headers: dict, models_dir: str | None, workers: int = 1, timeout: float = 300) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as data_dir:
        args = [sys.executable, str(REPO / "webservice.py"), "--port", "0", "--data-dir", data_dir]
        args += ["--workers", str(workers)]
        if models_dir:
            args += ["--models-dir", models_dir]
        started = time.perf_counter()
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            port = None
            while port is None and time.perf_counter() - started < timeout:
                line = proc.stdout.readline()
                match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
                if match:
                    port = int(match.group(1))
                elif proc.poll() is not None:
                    raise RuntimeError("webservice.py exited before serving")
            url_seconds = time.perf_counter() - started
            answered = False
            while not answered and time.perf_counter() - started < timeout:
                try:
                    # with workers the connection waits in the backlog while they load: a long timeout
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(10.0, timeout / 2))
                    conn.request("POST", "/api/v1/predict", body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    conn.close()
                    answered = response.status == 200
                except OSError:
                    time.sleep(0.01)
            if not answered:
                raise RuntimeError(f"no prediction answered within {timeout:.0f} s")
            first_seconds = time.perf_counter() - started
            time.sleep(1.0)
            workers_pids = children(proc.pid)  # none when the server runs in this process (waitress)
            memories = [rss_mb(pid) for pid in workers_pids or [proc.pid]]
            result = {
                "url_printed_s": round(url_seconds, 2),
                "first_prediction_s": round(first_seconds, 2),
                "idle_rss_mb": round(sum(m.get("rss", 0) for m in memories), 1),
                "idle_rss_anon_mb": round(sum(m.get("anon", 0) for m in memories), 1),
            }
            if workers_pids:
                result["master_rss_mb"] = round(rss_mb(proc.pid).get("rss", 0), 1)
            return result
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models-dir", help="folder with digits/ (default: shipped models)")
    parser.add_argument("--workers", type=int, default=1, help="serving processes (default 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    body, headers = multipart(digit_png())
    runs = [one_run(body, headers, args.models_dir, args.workers) for _ in range(args.runs)]
    firsts = [r["first_prediction_s"] for r in runs]
    training = subprocess.run(["pgrep", "-f", "digitrec train"], capture_output=True, text=True).stdout.split()
    result = {
        "runs": runs,
        "median_first_prediction_s": statistics.median(firsts),
        "worst_first_prediction_s": max(firsts),
        "goal_s": 6.0 if args.workers == 1 else 8.0,
        "workers": args.workers,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "training_running_concurrently": bool(training),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{'run':>3} {'URL printed s':>14} {'first 200 s':>12} {'idle RSS MB':>12} {'of it anon MB':>14}")
        for i, r in enumerate(runs, 1):
            print(
                f"{i:>3} {r['url_printed_s']:>14} {r['first_prediction_s']:>12} {r['idle_rss_mb']:>12} "
                f"{r['idle_rss_anon_mb']:>14}"
            )
        print(
            f"median to first prediction: {result['median_first_prediction_s']} s (goal <= {result['goal_s']:.0f} s; "
            f"{args.workers} worker process(es); load average {result['load_average']})"
        )
        if training:
            print("note: model training was running on this machine at the same time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
