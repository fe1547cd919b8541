"""Model hot swap under load: latency and errors while versions are swapped, against steady serving.

Starts the service as its own process on 127.0.0.1 with a models folder holding the shipped digits model
(flat) and a copy of it as version ``v2`` (a real checkpoint with another version id), polling off.
Client threads in this process send one PNG per request over keep-alive connections for two phases of
equal length, measured in one run:

* steady: no swap;
* swapping: every ``--swap-every`` seconds the other version is promoted (``digitrec.model.versions.promote``)
  and ``POST /api/v1/models/digits/reload`` makes the service load, warm and switch to it.

Printed: requests, non-200 answers, the versions that answered, p50/p99 latency and throughput of each
phase, their ratio, and how long each reload took (load + warm-up + switch, while serving).

Usage: python benchmarks/bench_hot_swap.py [--seconds 20] [--clients 8] [--swap-every 2] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_http import Server, digit_png, multipart  # noqa: E402

from digitrec.model import versions  # noqa: E402
from digitrec.model.checkpoints import shipped_models_dir  # noqa: E402

CHECKPOINT = ("model.index", "model.data-00000-of-00001")


def make_models(root: Path) -> tuple[str, str]:
    """root/digits: the shipped model (flat) and the same checkpoint as version v2."""
    source = shipped_models_dir() / "digits"
    flat = root / "digits"
    flat.mkdir(parents=True)
    for name in (*CHECKPOINT, "model.json"):
        shutil.copy2(source / name, flat / name)
    (flat / "v2").mkdir()
    for name in CHECKPOINT:
        shutil.copy2(source / name, flat / "v2" / name)
    document = json.loads((source / "model.json").read_text())
    shipped = document["version"]
    (flat / "v2" / "model.json").write_text(json.dumps({**document, "version": "v2"}))
    return shipped, "v2"


def run_phase(port: int, body: bytes, headers: dict[str, str], clients: int, seconds: float, swap=None) -> dict:
    stop = threading.Event()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    answered_by: dict[str, int] = {}
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/predict", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status, payload = -1, b""
            elapsed = time.perf_counter() - started
            version = json.loads(payload)["predictions"][0]["model_version"] if status == 200 else None
            with lock:
                latencies.append(elapsed)
                statuses[status] = statuses.get(status, 0) + 1
                if version:
                    answered_by[version] = answered_by.get(version, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    reloads = swap(stop, seconds) if swap else (time.sleep(seconds) or [])
    stop.set()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "non_200": sum(n for s, n in statuses.items() if s != 200),
        "statuses": {str(k): v for k, v in statuses.items()},
        "answered_by": answered_by,
        "req_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
        "reload_seconds": reloads,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--swap-every", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    body, headers = multipart(digit_png())
    with tempfile.TemporaryDirectory(prefix="bench-swap-") as tmp:
        root = Path(tmp) / "models"
        a, b = make_models(root)
        env = {"DIGITREC_MODEL_POLL_SECONDS": "0"}
        command = [sys.executable, str(REPO / "webservice.py"), "--port", "0", "--data-dir", str(Path(tmp) / "data")]
        server = Server([*command, "--models-dir", str(root)], env=env)
        try:
            run_phase(server.port, body, headers, args.clients, 3.0)  # warm the server and the connections

            def swapper(stop: threading.Event, seconds: float) -> list[float]:
                took = []
                deadline = time.monotonic() + seconds
                target = b
                while time.monotonic() + args.swap_every <= deadline:
                    time.sleep(args.swap_every)
                    versions.promote("digits", target, root)
                    started = time.perf_counter()
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
                    conn.request("POST", "/api/v1/models/digits/reload")
                    reply = json.loads(conn.getresponse().read())
                    conn.close()
                    assert reply.get("version") == target, reply
                    took.append(round(time.perf_counter() - started, 3))
                    target = a if target == b else b
                time.sleep(max(0.0, deadline - time.monotonic()))
                return took

            steady = run_phase(server.port, body, headers, args.clients, args.seconds)
            swapping = run_phase(server.port, body, headers, args.clients, args.seconds, swapper)
        finally:
            server.stop()
    result = {
        "clients": args.clients,
        "seconds_per_phase": args.seconds,
        "swap_every_s": args.swap_every,
        "steady": steady,
        "swapping": swapping,
        "ratio_p50": round(swapping["p50_ms"] / steady["p50_ms"], 2),
        "ratio_p99": round(swapping["p99_ms"] / steady["p99_ms"], 2),
        "ratio_throughput": round(swapping["req_per_s"] / steady["req_per_s"], 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for phase in ("steady", "swapping"):
        r = result[phase]
        print(
            f"{phase:>9}: {r['requests']} requests, {r['non_200']} not 200, {r['req_per_s']} req/s, "
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms, answered by {r['answered_by']}"
        )
    reloads = swapping["reload_seconds"]
    median = statistics.median(reloads)
    print(f"   swaps: {len(reloads)}, reload took {min(reloads)}-{max(reloads)} s (median {median})")
    print(
        f"   swapping/steady: p50 x{result['ratio_p50']}, p99 x{result['ratio_p99']}, "
        f"throughput x{result['ratio_throughput']}"
    )
    return 0 if swapping["non_200"] == 0 and steady["non_200"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
