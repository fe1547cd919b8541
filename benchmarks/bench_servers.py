"""digitrec under waitress, gunicorn and granian, beside the FastAPI peer and a trivial app, with wrk.

    python benchmarks/bench_servers.py [--rounds 3] [--seconds 5] [--levels 1,32] [--json]

Every server runs as its own process tree on 127.0.0.1 and all of them are started first; then, in
each of ``--rounds`` rounds and for each concurrency of ``--levels`` in turn, every server in turn (the
order rotates between rounds) gets ``wrk`` (Debian's) for ``--seconds``: ``-c 1 -t 1`` and ``-c N -t 2``,
keep-alive connections, one 112x112 PNG per ``POST /api/v1/predict`` (the same multipart body as
``bench_http.py``). So every server meets the same load generator at nearly the same moments of a
shared host. Reported per server and level: the median over rounds of req/s, p50 and p99 (wrk's
latency distribution of that round), and CPU ms per request (user + system time of the server's
master and workers).

The servers:

* digitrec, defaults (records in SQLite with their images, micro-batching, access log off in every
  server so none pays for a log line the others do not write): waitress (one process), gunicorn and
  granian, each with ``--workers 1`` and ``--workers 2``;
* the peer: ``benchmarks/peers/fastapi_peer.py`` under ``uvicorn`` (with ``--workers 2`` for two);
* the trivial app (reads the body, answers a small JSON) under each of the three servers, one process:
  what the HTTP server alone costs per request.

Ratios printed: each digitrec row's req/s over the peer's with the same number of processes, and the
peer's CPU per request over ours: the median of each round's own ratio, both servers measured at the same
level in the same round (the levels are the outer loop, so a pair is minutes apart at most on a shared
host), beside both sides' medians; and its p99 at the highest level against the peer's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_http import digit_png, multipart  # noqa: E402

TRIVIAL = """
def app(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    body = b'{"ok":true}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "{content_type}"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.3f %.3f %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Contender:
    """One server process tree on its own port."""

    def __init__(self, name: str, kind: str, processes: int, args: list[str], env: dict[str, str], port: int):
        self.name, self.kind, self.processes, self.port = name, kind, processes, port
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def tree(self) -> list[int]:
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            except OSError:
                pass
        return pids

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def wait_ready(self, body: bytes, headers: dict, timeout: float = 600) -> None:
        """Until every process answers (digitrec: /readyz from ``processes`` pids with every model
        loaded), then until the tree is idle (start-up work such as the library page release done)."""
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{self.name} exited: {self.log.read()[-2000:].decode(errors='replace')}")
            try:
                if self.kind == "digitrec":
                    status, reply = self.request("GET", "/readyz")
                    state = json.loads(reply)
                    if status == 200 and all(s == "loaded" for s in state["models"].values()):
                        seen.add(state["pid"])
                    if len(seen) >= self.processes:
                        break
                else:
                    status, _ = self.request("POST", "/api/v1/predict", body, headers)
                    if status == 200 and len(self.tree()) > self.processes - 1:
                        seen.add(len(seen))
                        if len(seen) >= 5 * self.processes:
                            break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s")
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            before = self.cpu_seconds()
            time.sleep(1.0)
            quiet = quiet + 1 if self.cpu_seconds() - before < 0.05 else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def contenders(work: Path, models_dir: str | None, threads: int, only: set[str] | None) -> list[Contender]:
    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "DIGITREC_ACCESS_LOG": "0"}
    if models_dir:
        env["DIGITREC_MODELS_DIR"] = models_dir
    (work / "trivial_app.py").write_text(TRIVIAL)
    made: list[Contender] = []

    def add(name: str, kind: str, processes: int, args: list[str], extra: dict | None = None) -> None:
        if only and not any(word in name for word in only):
            return
        port = free_port()
        args = [a.replace("{port}", str(port)) for a in args]
        made.append(Contender(name, kind, processes, args, {**env, **(extra or {})}, port))

    py = sys.executable
    for server, counts in (("waitress", (1,)), ("gunicorn", (1, 2)), ("granian", (1, 2))):
        for n in counts:
            data = work / f"{server}-{n}"
            args = [py, str(REPO / "webservice.py"), "--server", server, "--workers", str(n), "--port", "{port}"]
            args += ["--data-dir", str(data), "--threads", str(threads)]
            add(f"digitrec {server} x{n}", "digitrec", n, args)
    for n in (1, 2):
        add(
            f"peer fastapi+uvicorn x{n}",
            "peer",
            n,
            [py, "-m", "uvicorn", "benchmarks.peers.fastapi_peer:app", "--port", "{port}", "--workers", str(n)]
            + ["--log-level", "warning", "--no-access-log"],
            {"DIGITREC_PEER_DIR": str(work / f"peer-{n}")},
        )
    trivial_env = {"PYTHONPATH": f"{work}:{REPO}"}
    add(
        "trivial waitress x1",
        "trivial",
        1,
        [py, "-c", f"import waitress, trivial_app; waitress.serve(trivial_app.app, port={{port}}, threads={threads})"],
        trivial_env,
    )
    add(
        "trivial gunicorn x1",
        "trivial",
        1,
        [py, "-m", "gunicorn", "-k", "gthread", "--threads", str(threads), "-b", "127.0.0.1:{port}", "trivial_app:app"],
        trivial_env,
    )
    add(
        "trivial granian x1",
        "trivial",
        1,
        [py, "-m", "granian", "--interface", "wsgi", "--port", "{port}", "--blocking-threads", str(threads)]
        + ["--log-level", "warning", "trivial_app:app"],
        trivial_env,
    )
    return made


def run_wrk(port: int, script: Path, concurrency: int, seconds: int) -> dict:
    threads = 1 if concurrency == 1 else 2
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script)]
        + [f"http://127.0.0.1:{port}/api/v1/predict"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+) (\d+)", out.stdout)
    if not match:
        raise RuntimeError(f"wrk printed no result: {out.stdout} {out.stderr}")
    requests, micros, p50, p99, non2xx, errors = match.groups()
    return {
        "requests": int(requests),
        "rps": int(requests) / (int(micros) / 1e6),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "non_2xx": int(non2xx),
        "errors": int(errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3); medians reported")
    parser.add_argument("--seconds", type=int, default=5, help="wrk time per server, level and round")
    parser.add_argument("--levels", default="1,32", help="concurrency levels (default 1,32)")
    parser.add_argument("--threads", type=int, default=16, help="request threads per digitrec process")
    parser.add_argument("--only", help="comma-separated words: run only the servers whose name has one")
    parser.add_argument("--models-dir", help="folder with digits/ (default: the shipped models)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    levels = [int(x) for x in args.levels.split(",")]
    png = digit_png()
    body, headers = multipart(png)
    load_before = os.getloadavg()
    samples: dict[tuple[str, int], list[dict]] = {}
    batches: dict[tuple[str, int], list[tuple[float, float]]] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp:
        work = Path(tmp)
        (work / "body.bin").write_bytes(body)
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT.format(content_type=headers["Content-Type"], body=work / "body.bin"))
        only = set(args.only.split(",")) if args.only else None
        servers = contenders(work, args.models_dir, args.threads, only)
        try:
            for server in servers:
                server.wait_ready(body, headers)
                print(f"ready: {server.name}", file=sys.stderr, flush=True)
            for server in servers:  # warm-up, not reported
                run_wrk(server.port, script, max(levels), 1)
            for round_ in range(args.rounds):
                shift = round_ % len(servers)
                for c in levels:  # every server at one level before the next level
                    for server in servers[shift:] + servers[:shift]:
                        calls = batch_totals(server)
                        cpu = server.cpu_seconds()
                        row = run_wrk(server.port, script, c, args.seconds)
                        cpu = server.cpu_seconds() - cpu
                        after = batch_totals(server)
                        if calls and after:
                            batches.setdefault((server.name, c), []).append((after[0] - calls[0], after[1] - calls[1]))
                        row["cpu_ms_per_request"] = 1000 * cpu / row["requests"] if row["requests"] else None
                        row["round"] = round_
                        samples.setdefault((server.name, c), []).append(row)
                        loads.append(os.getloadavg()[0])
                        cpu_text = f"{row['cpu_ms_per_request']:.3f}" if row["requests"] else "-"
                        print(
                            f"  round {round_ + 1} {server.name:<26} c={c:<3} {row['rps']:8.1f} req/s "
                            f"p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} ms CPU {cpu_text} "
                            f"ms/req non-2xx {row['non_2xx']} errors {row['errors']}",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            for server in servers:
                server.stop()
    rows = []
    for (name, c), runs in samples.items():
        rows.append(
            {
                "server": name,
                "concurrency": c,
                "rps": round(statistics.median(r["rps"] for r in runs), 1),
                "rps_rounds": [round(r["rps"], 1) for r in runs],
                "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
                "p99_rounds": [round(r["p99_ms"], 1) for r in runs],
                "cpu_ms_per_request": median_of(r["cpu_ms_per_request"] for r in runs),
                "failed": sum(r["non_2xx"] + r["errors"] for r in runs),
            }
        )
    result = {
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "levels": levels,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_during": [round(min(loads), 2), round(statistics.median(loads), 2), round(max(loads), 2)]
        if loads
        else None,
        "rows": rows,
        "ratios": ratios(rows, samples, max(levels)),
        "images_per_model_call": {
            f"{name} c={c}": round(sum(b[0] for b in got) / sum(b[1] for b in got), 2)
            for (name, c), got in batches.items()
            if sum(b[1] for b in got)
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


def batch_totals(server: Contender) -> tuple[float, float] | None:
    """(images, model calls) so far, from the service's /metrics (all its workers); None for the others."""
    if server.kind != "digitrec":
        return None
    try:
        _, text = server.request("GET", "/metrics")
    except (OSError, http.client.HTTPException):
        return None
    found = dict(re.findall(r'^digitrec_batch_size_(sum|count)\{model="digits"\} (\S+)$', text.decode(), re.M))
    return (float(found["sum"]), float(found["count"])) if "count" in found else None


def median_of(values) -> float | None:
    """The median of the values that are not None (a round without an answered request has no CPU per
    request), or None."""
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def ratios(rows: list[dict], samples: dict[tuple[str, int], list[dict]], high: int) -> list[dict]:
    """Each digitrec row against the peer with as many processes: req/s (digitrec / peer) and CPU per
    request (peer / digitrec), each the median of the rounds' own ratios (both servers measured in the
    same round, minutes apart at most), with both sides' medians; p99 at ``high`` beside the peer's."""
    peers = {(r["server"][-2:], r["concurrency"]): r for r in rows if r["server"].startswith("peer")}
    out = []
    for r in rows:
        peer = peers.get((r["server"][-2:], r["concurrency"]))
        if not r["server"].startswith("digitrec") or not peer or not peer["rps"]:
            continue
        ours = {s["round"]: s for s in samples[(r["server"], r["concurrency"])]}
        theirs = {s["round"]: s for s in samples[(peer["server"], peer["concurrency"])]}
        paired = [(ours[k], theirs[k]) for k in ours if k in theirs]
        rps = [a["rps"] / b["rps"] for a, b in paired if b["rps"]]
        cpu = [
            b["cpu_ms_per_request"] / a["cpu_ms_per_request"]
            for a, b in paired
            if a["cpu_ms_per_request"] and b["cpu_ms_per_request"]
        ]
        entry = {
            "server": r["server"],
            "concurrency": r["concurrency"],
            "rps": r["rps"],
            "peer_rps": peer["rps"],
            "rps_over_peer": round(statistics.median(rps), 2) if rps else None,
            "rps_over_peer_rounds": [round(x, 2) for x in rps],
            "peer_cpu_over_ours": round(statistics.median(cpu), 2) if cpu else None,
        }
        if r["concurrency"] == high:
            entry["p99_ms"], entry["peer_p99_ms"] = r["p99_ms"], peer["p99_ms"]
        out.append(entry)
    return out


def print_table(result: dict) -> None:
    line = "{:<28} {:>3} {:>9} {:>8} {:>8} {:>10} {:>7}  {}"
    print("\n" + line.format("server", "c", "req/s", "p50 ms", "p99 ms", "CPU ms/req", "failed", "req/s per round"))
    for r in sorted(result["rows"], key=lambda r: (r["server"], r["concurrency"])):
        print(
            line.format(
                r["server"],
                r["concurrency"],
                r["rps"],
                r["p50_ms"],
                r["p99_ms"],
                r["cpu_ms_per_request"],
                r["failed"],
                r["rps_rounds"],
            )
        )
    print()
    print("digitrec over the peer (medians of the rounds' own ratios; req/s: ours / peer's, CPU: peer's / ours)")
    for e in result["ratios"]:
        extra = f"  p99 {e['p99_ms']} vs peer {e['peer_p99_ms']} ms" if "p99_ms" in e else ""
        print(
            f"{e['server']:<28} c={e['concurrency']:<3} {e['rps']} vs {e['peer_rps']} req/s: {e['rps_over_peer']}x "
            f"{e['rps_over_peer_rounds']}  CPU/req {e['peer_cpu_over_ours']}x{extra}"
        )
    print(f"\nimages per model call (whole run, all levels): {result['images_per_model_call']}")
    print(
        f"\n{result['cpus']} CPUs; load average before {result['load_average_before']}, during (min, median, max) "
        f"{result['load_average_during']}; {result['rounds']} rounds x {result['seconds']} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
