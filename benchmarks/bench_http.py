"""HTTP throughput and latency of the service, against a trivial Werkzeug app under the same waitress.

Starts each server as its own process on 127.0.0.1 (ephemeral port), then drives it from a separate
load-generator process (threads with keep-alive ``http.client`` connections), so the load generator
and the server do not share a GIL. Each level runs for a fixed, bounded time. Measured:

* digitrec ``POST /api/v1/predict`` with one PNG per request, recording on, micro-batching on and off;
* the trivial app answering the same requests (reads the body, returns a small JSON);
* the service's RSS after ``--memory-seconds`` of load at the highest concurrency;
* the server's CPU time per answered request (user + system, all its threads), which bounds what
  any number of threads or processes could reach on this machine's cores.

``--workers N`` runs the real ``digitrec serve --workers N`` (gunicorn master, N workers) beside the
single-process service in the same run, and reports the ratio of their c=max throughputs, the RSS of
every worker after ``--memory-seconds`` at the highest concurrency, and their sum.

The baseline is the work a request cannot avoid, measured in a separate process in the same run:
``DigitRecognizer.predict`` on the same PNG plus one SQLite insert committed in the calling thread, into
a file with the service's schema, indexes and tally triggers (CPU time per call). The server's CPU per
request at c=1 is compared with it, and CPU per request at the highest concurrency with that at c=1:
what is above is coordination (threads handing work over).

``--busy`` runs a CPU-bound process (a spinning loop) beside the servers for the whole run, as on a
shared host.

``--processes N`` is a what-if, not a way the service runs: N copies of the service, forked before
TensorFlow is imported, share one listening socket, so the GIL of one process no longer caps the
throughput; their memory is reported summed.

Usage: python benchmarks/bench_http.py [--seconds 8] [--levels 1,8,32] [--memory-seconds 60] [--json]
       python benchmarks/bench_http.py --workers 2 [--busy]   (workers vs one process)
       python benchmarks/bench_http.py --processes 2 --no-trivial --no-unbatched   (the what-if)
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from digitrec.service.memory import rss_mb  # noqa: E402  (stdlib only: no TensorFlow here)

TRIVIAL_APP = """
import sys, waitress
from werkzeug.wrappers import Request, Response

@Request.application
def app(request):
    request.get_data()
    return Response('{"ok":true}', content_type="application/json")

server = waitress.create_server(app, host="127.0.0.1", port=0, threads=int(sys.argv[1]))
print(f"serving on http://127.0.0.1:{server.effective_port}/ ", flush=True)
server.run()
"""

# The what-if of --processes: the listening socket is bound first, then the service is forked before
# anything imports TensorFlow (its thread pools do not survive a fork), and every copy serves it.
PROCESSES_APP = """
import os, socket, sys, time
from pathlib import Path
processes, data_dir, threads, batch_size, batch_wait_ms = sys.argv[1:6]
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(1024)
ready_r, ready_w = os.pipe()
children = []
for i in range(int(processes)):
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        import waitress
        from digitrec.service.config import ServiceConfig
        from digitrec.service.runtime import limit_tensorflow_threads, release_pages_when_loaded
        config = ServiceConfig.from_env(
            data_dir=Path(data_dir), threads=int(threads), batch_size=int(batch_size),
            batch_wait_ms=float(batch_wait_ms),
        )
        limit_tensorflow_threads(config.tf_threads)
        from digitrec.service.app import create_app
        app = create_app(config)
        if config.release_library_pages:
            release_pages_when_loaded(app, config)
        server = waitress.create_server(app, sockets=[sock], threads=int(threads))
        os.write(ready_w, b"r")
        server.run()
        os._exit(0)
    children.append(pid)
ready = 0
while ready < len(children):  # each child writes one byte once its models are loaded
    ready += len(os.read(ready_r, 64))
print(f"serving on http://127.0.0.1:{sock.getsockname()[1]}/ children {children}", flush=True)
while True:
    time.sleep(3600)
"""


# The baseline: the unavoidable work of one request, in one thread, no server. Prints JSON.
BASELINE = """
import json, os, sys, time, tempfile
from pathlib import Path
from benchmarks.baseline import open_database, predict_and_insert
from digitrec.model.recognizer import DigitRecognizer
png = Path(sys.argv[1]).read_bytes()
seconds = float(sys.argv[2])
models_dir = sys.argv[3] or None
recognizer = DigitRecognizer.load("digits", models_dir=models_dir)
with tempfile.TemporaryDirectory() as tmp:
    conn = open_database(Path(tmp) / "records.sqlite3")

    def once():
        predict_and_insert(recognizer, conn, png)

    for _ in range(200):
        once()
    n, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < seconds:
        once()
        n += 1
    cpu = time.process_time() - cpu0
    print(json.dumps({"calls": n, "cpu_ms_per_call": round(1000 * cpu / n, 3),
                      "wall_ms_per_call": round(1000 * (time.perf_counter() - wall0) / n, 3)}))
"""

BUSY = "while True: pass"


def digit_png() -> bytes:
    """A real MNIST test digit, drawn dark on white and enlarged, as a client would photograph it."""
    import cv2

    from digitrec.learning.datasets import load_split

    images, _ = load_split("mnist", "test", os.environ.get("DIGITREC_DATASETS", REPO.parent / "shared/datasets"))
    ok, buffer = cv2.imencode(".png", cv2.resize(255 - images[0], (112, 112)))
    return buffer.tobytes()


def multipart(png: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="digit.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# --- servers ---------------------------------------------------------------------------------------


class Server:
    """A server subprocess; ``url`` is read from the line it prints when ready."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> None:
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = re.search(r"(http://127\.0\.0\.1:(\d+))/", line)
            if match:
                self.url, self.port = match.group(1), int(match.group(2))
                return
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"server {args} did not start")

    def pids(self) -> list[int]:
        """The serving processes: the server itself, or its children when it forked copies."""
        return self.children() or [self.proc.pid]

    def children(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            children = []
        return [int(pid) for pid in children]

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server: every process (a gunicorn master too),
        all their threads."""
        total = 0
        for pid in {self.proc.pid, *self.children()}:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> dict[str, float]:
        """Resident memory in MB: total, anonymous (the process's own) and file-backed (library pages),
        summed over the serving processes (so shared library pages count once per process)."""
        memories = [rss_mb(pid) for pid in self.pids()]
        return {f"{key}_mb": round(sum(m[key] for m in memories), 1) for key in ("rss", "anon", "file")}

    def stop(self) -> None:
        for pid in self.pids() if self.proc.poll() is None else []:
            if pid != self.proc.pid:
                os.kill(pid, 15)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def digitrec_server(
    data_dir: Path,
    threads: int,
    batch_size: int,
    batch_wait_ms: float,
    models_dir: str | None,
    release_pages: bool = True,
    processes: int = 1,
    workers: int = 1,
) -> Server:
    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["DIGITREC_RELEASE_LIBRARY_PAGES"] = "1" if release_pages else "0"
    if processes > 1:
        if models_dir:
            env["DIGITREC_MODELS_DIR"] = models_dir
        settings = [str(processes), str(data_dir), str(threads), str(batch_size), str(batch_wait_ms)]
        return Server([sys.executable, "-c", PROCESSES_APP, *settings], env=env)
    args = [sys.executable, str(REPO / "webservice.py"), "--port", "0", "--data-dir", str(data_dir)]
    if workers == 1:  # one process under waitress, as the trivial app it is compared with
        args += ["--server", "waitress"]
    args += [
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--batch-size",
        str(batch_size),
        "--batch-wait-ms",
        str(batch_wait_ms),
    ]
    if models_dir:
        args += ["--models-dir", models_dir]
    server = Server(args, env=env)
    wait_for_workers(server, workers)
    wait_until_idle(server)
    return server


def wait_for_workers(server: Server, workers: int, timeout: float = 300) -> None:
    """The URL is printed before the lazily loaded model (fashion) is in, and gunicorn prints it before
    its workers have loaded anything: wait until ``workers`` distinct pids answered /readyz with 200
    and every model loaded."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers and time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            body = json.loads(response.read())
            conn.close()
            if response.status == 200 and all(state == "loaded" for state in body["models"].values()):
                seen.add(body["pid"])
        except OSError:
            pass
        time.sleep(0.05)
    if len(seen) < workers:
        server.stop()
        raise RuntimeError(f"only {len(seen)} of {workers} workers became ready")


def wait_until_idle(server: Server, window: float = 0.5, busy_share: float = 0.03, timeout: float = 120) -> None:
    """Wait until the server uses under ``busy_share`` of a core for two windows in a row: once the
    models are in, each process still hands its start-up library pages back and warms the models again
    (``release_pages_when_loaded``), and that CPU must not be counted as the first level's requests'."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        before = server.cpu_seconds()
        time.sleep(window)
        quiet = quiet + 1 if server.cpu_seconds() - before < busy_share * window else 0


def run_baseline(png: bytes, seconds: float, models_dir: str | None) -> dict:
    """CPU per ``predict(PNG)`` + one SQLite insert, in its own process (no TensorFlow here)."""
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(png)
        f.flush()
        out = subprocess.run(
            [sys.executable, "-c", BASELINE, f.name, str(seconds), models_dir or ""],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def trivial_server(threads: int) -> Server:
    return Server([sys.executable, "-c", TRIVIAL_APP, str(threads)])


# --- load ------------------------------------------------------------------------------------------


def _load_process(port: int, path: str, body: bytes, headers: dict, threads: int, seconds: float, out) -> None:
    """Runs in its own process: ``threads`` keep-alive clients for ``seconds``; sends back latencies."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                mine.append(time.perf_counter() - start)
            else:
                bad += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    workers = [threading.Thread(target=client) for _ in range(threads)]
    begin = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((latencies, errors[0], time.perf_counter() - begin))


def run_load(port: int, path: str, body: bytes, headers: dict, concurrency: int, seconds: float) -> dict:
    """Split ``concurrency`` clients over up to 2 load processes; bounded by ``seconds``."""
    procs_n = 1 if concurrency < 8 else 2
    queue: mp.Queue = mp.Queue()
    shares = [concurrency // procs_n + (1 if i < concurrency % procs_n else 0) for i in range(procs_n)]
    procs = [
        mp.Process(target=_load_process, args=(port, path, body, headers, share, seconds, queue)) for share in shares
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    latencies = sorted(lat for r in results for lat in r[0])
    errors = sum(r[1] for r in results)
    elapsed = max(r[2] for r in results)
    if not latencies:
        return {
            "concurrency": concurrency,
            "requests": 0,
            "errors": errors,
            "rps": 0.0,
            "p50_ms": None,
            "p99_ms": None,
        }
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, 2),
    }


def measure(
    name: str, server: Server, path: str, body: bytes, headers: dict, levels: list[int], seconds: float
) -> list[dict]:
    rows = []
    run_load(server.port, path, body, headers, max(levels), min(2.0, seconds))  # warm-up, not reported
    for c in levels:
        cpu_before = server.cpu_seconds()
        row = run_load(server.port, path, body, headers, c, seconds)
        cpu = server.cpu_seconds() - cpu_before  # includes the load processes' start and stop: < 1 %
        row["server"] = name
        row["server_cpu_ms_per_request"] = round(1000 * cpu / row["requests"], 3) if row["requests"] else None
        row["server_cores_busy"] = round(cpu / seconds, 2)
        rows.append(row)
        print(
            f"  {name:<24} c={c:<3} {row['rps']:>8} req/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms"
            f"  CPU {row['server_cpu_ms_per_request']} ms/req ({row['server_cores_busy']} cores)"
            f"  errors {row['errors']}",
            file=sys.stderr,
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured time per level (default 8)")
    parser.add_argument("--levels", default="1,8,32", help="concurrency levels (default 1,8,32)")
    parser.add_argument("--threads", type=int, default=16, help="request threads per server process (default 16)")
    parser.add_argument("--batch-size", type=int, default=32, help="micro-batch size when batching is on")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="batcher wait when batching is on")
    parser.add_argument("--no-trivial", action="store_true", help="skip the trivial app (for quick sweeps)")
    parser.add_argument("--no-unbatched", action="store_true", help="skip the batching-off runs")
    parser.add_argument("--no-single", action="store_true", help="with --workers: skip the single-process run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the predict + insert baseline")
    parser.add_argument(
        "--memory-seconds",
        type=float,
        default=60.0,
        help="load time before reading the service's RSS (0 skips; default 60)",
    )
    parser.add_argument("--models-dir", help="folder with digits/ (default: <data>/trained_models or shipped)")
    parser.add_argument(
        "--keep-library-pages",
        action="store_true",
        help="run the service with DIGITREC_RELEASE_LIBRARY_PAGES=0 (RSS as it is without the page release)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also run `digitrec serve --workers N` (gunicorn) and compare it with one process (default 1)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="what-if: N copies of the service on one socket (default 1, the way the service runs)",
    )
    parser.add_argument("--busy", action="store_true", help="run a CPU-bound spinning process beside the servers")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    png = digit_png()
    body, headers = multipart(png)
    path = "/api/v1/predict"
    rows: list[dict] = []
    memory: dict = {}
    baseline: dict = {}
    training = subprocess.run(["pgrep", "-f", "digitrec train"], capture_output=True, text=True).stdout.split()
    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if args.busy else None
    load_before = os.getloadavg()

    try:
        with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
            if not args.no_baseline:
                baseline = run_baseline(png, min(args.seconds, 5.0), args.models_dir)
                print(
                    f"baseline: predict(PNG) + one SQLite insert: {baseline['cpu_ms_per_call']} ms CPU per call",
                    file=sys.stderr,
                )
            if not args.no_trivial:
                print("trivial Werkzeug app", file=sys.stderr)
                trivial = trivial_server(args.threads)
                try:
                    rows += measure("trivial werkzeug app", trivial, path, body, headers, levels, args.seconds)
                finally:
                    trivial.stop()
            copies = f" x{args.processes} processes" if args.processes > 1 else ""
            batchings = [("on", args.batch_size)] + ([] if args.no_unbatched else [("off", 1)])
            setups = []  # (label, batch size, workers)
            if args.workers > 1:
                if not args.no_single:
                    setups += [(f"digitrec 1 process, batching {b}", size, 1) for b, size in batchings]
                setups += [
                    (f"digitrec {args.workers} workers, batching {b}", size, args.workers) for b, size in batchings
                ]
            else:
                setups += [(f"digitrec batching {b}{copies}", size, 1) for b, size in batchings]
            memory_label = next(label for label, size, n in reversed(setups) if size > 1)
            for label, batch, workers in setups:
                print(label, file=sys.stderr)
                server = digitrec_server(
                    Path(tmp) / label.replace(" ", "-").replace(",", ""),
                    args.threads,
                    batch,
                    args.batch_wait_ms,
                    args.models_dir,
                    release_pages=not args.keep_library_pages,
                    processes=args.processes,
                    workers=workers,
                )
                try:
                    rows += measure(label, server, path, body, headers, levels, args.seconds)
                    if label == memory_label and args.memory_seconds > 0:
                        load = run_load(server.port, path, body, headers, max(levels), args.memory_seconds)
                        per_process = {pid: rss_mb(pid) for pid in server.pids()}
                        memory = {
                            "server": label,
                            "concurrency": max(levels),
                            "seconds": args.memory_seconds,
                            "library_pages_released": not args.keep_library_pages,
                            **server.rss_mb(),
                            "per_process_rss_mb": {
                                str(pid): round(m.get("rss", 0), 1) for pid, m in per_process.items()
                            },
                            "master_rss_mb": round(rss_mb(server.proc.pid).get("rss", 0), 1) if workers > 1 else None,
                            "requests": load["requests"],
                            "rps": load["rps"],
                        }
                        print(
                            f"  RSS after {args.memory_seconds:.0f} s at c={max(levels)}: {memory['rss_mb']} MB "
                            f"(anonymous {memory['anon_mb']}, file-backed {memory['file_mb']}; per process "
                            f"{memory['per_process_rss_mb']})",
                            file=sys.stderr,
                        )
                finally:
                    server.stop()
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()

    trivial_rps = {r["concurrency"]: r["rps"] for r in rows if r["server"] == "trivial werkzeug app"}
    for r in rows:
        base = trivial_rps.get(r["concurrency"])
        r["pct_of_trivial"] = round(100 * r["rps"] / base, 1) if base else None
    result = {
        "levels": levels,
        "seconds_per_level": args.seconds,
        "threads_per_process": args.threads,
        "batch_size": args.batch_size,
        "batch_wait_ms": args.batch_wait_ms,
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "service_processes": args.processes,
        "busy_process_beside": args.busy,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "training_running_concurrently": bool(training),
        "baseline": baseline,
        "rows": rows,
        "memory": memory,
        "ratios": ratios(rows, baseline, levels),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def ratios(rows: list[dict], baseline: dict, levels: list[int]) -> dict:
    """The goals' comparisons (see BENCHMARKS.md), each from figures of this run."""
    low, high = min(levels), max(levels)
    by = {(r["server"], r["concurrency"]): r for r in rows}
    servers = sorted({r["server"] for r in rows if r["server"] != "trivial werkzeug app"})
    out: dict = {}
    for name in servers:
        first, last = by.get((name, low)), by.get((name, high))
        if not first or not last or not first["server_cpu_ms_per_request"] or not last["server_cpu_ms_per_request"]:
            continue
        entry = {
            f"cpu_c{high}_over_c{low}": round(last["server_cpu_ms_per_request"] / first["server_cpu_ms_per_request"], 3)
        }
        if baseline:
            entry[f"cpu_c{low}_over_baseline"] = round(
                first["server_cpu_ms_per_request"] / baseline["cpu_ms_per_call"], 3
            )
        out[name] = entry
    for batching in ("on", "off"):
        single = next(
            (
                r
                for r in rows
                if r["concurrency"] == high
                and r["server"].startswith("digitrec 1 process")
                and r["server"].endswith(batching)
            ),
            None,
        )
        multi = next(
            (
                r
                for r in rows
                if r["concurrency"] == high and "workers" in r["server"] and r["server"].endswith(batching)
            ),
            None,
        )
        if single and multi and single["rps"]:
            out[f"workers_over_single_rps_c{high}_batching_{batching}"] = round(multi["rps"] / single["rps"], 3)
    return out


def print_table(result: dict) -> None:
    head = ("server", "c", "req/s", "p50 ms", "p99 ms", "% trivial", "CPU ms/req", "cores", "errors")
    line = "{:<36} {:>3} {:>9} {:>8} {:>8} {:>10} {:>10} {:>6} {:>7}"
    print("\n" + line.format(*head))
    keys = (
        "server",
        "concurrency",
        "rps",
        "p50_ms",
        "p99_ms",
        "pct_of_trivial",
        "server_cpu_ms_per_request",
        "server_cores_busy",
        "errors",
    )
    for r in result["rows"]:
        print(line.format(*(str(r[key]) for key in keys)))
    if result["baseline"]:
        print(f"\nbaseline, predict(PNG) + one SQLite insert: {result['baseline']['cpu_ms_per_call']} ms CPU per call")
    for name, value in result["ratios"].items():
        print(f"{name}: {value}")
    memory = result["memory"]
    if memory:
        print(
            f"\nRSS of {memory['server']} after {memory['seconds']:.0f} s at c={memory['concurrency']}: "
            f"{memory['rss_mb']} MB summed (anonymous {memory['anon_mb']} MB, file-backed {memory['file_mb']} MB; "
            f"per worker {memory['per_process_rss_mb']}; master {memory['master_rss_mb']}; "
            f"library pages released: {memory['library_pages_released']})"
        )
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    if result["busy_process_beside"]:
        print("a CPU-bound process was spinning beside the servers during the whole run")
    if result["training_running_concurrently"]:
        print("note: model training was running on this machine at the same time")


if __name__ == "__main__":
    sys.exit(main())
