"""What storing each request's image with its record costs the service: c=32 throughput with and without
the image write, measured in one run, in interleaved rounds (A B A B ...), so the machine's noise hits
both sides alike.

Three single-process services on SQLite, each in its own process (the load generator too, as in
bench_http.py, whose server and load code this reuses):

  files only       what the service did before images went into the store: PNG file + record
                   (a bench-only store wrapper drops the image; there is no such switch in the service)
  files + store    the default now: PNG file + record + image in the store, one transaction
  store only       DIGITREC_KEEP_UPLOAD_FILES=0: record + image in the store, no file

Reported per variant: median req/s and p99 over the rounds, and the server's CPU time per request (all
its threads), which on a shared, busy machine is the steadier measure of what the image write costs.

Usage: python benchmarks/bench_images.py [--rounds 3] [--seconds 8] [--concurrency 32] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_http import REPO, Server, digit_png, multipart, run_load  # noqa: E402

SERVER = """
import sys
from pathlib import Path
import waitress
from digitrec.service.app import create_app, open_records_store
from digitrec.service.config import ServiceConfig
from digitrec.service.runtime import limit_tensorflow_threads, release_pages_when_loaded

mode, data_dir, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
config = ServiceConfig.from_env(data_dir=data_dir, threads=threads, keep_upload_files=mode != "store-only")
limit_tensorflow_threads(config.tf_threads)
data_dir.mkdir(parents=True, exist_ok=True)
store = open_records_store(config)
if mode == "files-only":  # the service as it was: the record only (the file is written by the app)
    add_many = store.add_many
    store.add_many = lambda records, images=None: add_many(records)
app = create_app(config, store=store)
if config.release_library_pages:
    release_pages_when_loaded(app, config)
server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
print(f"serving on http://127.0.0.1:{server.effective_port}/ ", flush=True)
server.run()
"""
MODES = ("files-only", "files+store", "store-only")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per variant (default 3)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per round (default 8)")
    parser.add_argument("--concurrency", type=int, default=32, help="clients (default 32)")
    parser.add_argument("--threads", type=int, default=16, help="waitress threads (default 16)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)
    body, headers = multipart(digit_png())
    path = "/api/v1/predict"
    env = {"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        servers = {}
        try:
            for mode in MODES:
                data_dir = Path(tmp) / mode.replace("+", "-")
                servers[mode] = Server([sys.executable, "-c", SERVER, mode, str(data_dir), str(args.threads)], env=env)
            for server in servers.values():  # warm-up, not reported
                run_load(server.port, path, body, headers, args.concurrency, 2.0)
            for round_number in range(args.rounds):
                for mode, server in servers.items():
                    cpu_before = server.cpu_seconds()
                    row = run_load(server.port, path, body, headers, args.concurrency, args.seconds)
                    cpu = server.cpu_seconds() - cpu_before
                    row["cpu_ms_per_request"] = round(1000 * cpu / row["requests"], 3) if row["requests"] else None
                    runs[mode].append(row)
                    print(
                        f"  round {round_number + 1} {mode:<12} {row['rps']:>7} req/s  p50 {row['p50_ms']} ms  "
                        f"p99 {row['p99_ms']} ms  CPU {row['cpu_ms_per_request']} ms/req  errors {row['errors']}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()
    summary = {}
    for mode, rows in runs.items():
        summary[mode] = {
            "rps_median": round(statistics.median(r["rps"] for r in rows), 1),
            "p99_ms_median": round(statistics.median(r["p99_ms"] for r in rows if r["p99_ms"] is not None), 2),
            "rounds_rps": [r["rps"] for r in rows],
            "cpu_ms_per_request_median": round(statistics.median(r["cpu_ms_per_request"] for r in rows), 3),
            "errors": sum(r["errors"] for r in rows),
        }
    base = summary["files-only"]["rps_median"]
    base_cpu = summary["files-only"]["cpu_ms_per_request_median"]
    for mode in MODES:
        summary[mode]["pct_of_files_only"] = round(100 * summary[mode]["rps_median"] / base, 1) if base else None
        # The service is CPU-bound at c=32: CPU per request bounds throughput whatever else runs on the host.
        cpu = summary[mode]["cpu_ms_per_request_median"]
        summary[mode]["cpu_pct_of_files_only"] = round(100 * cpu / base_cpu, 1) if base_cpu else None
    result = {
        "concurrency": args.concurrency,
        "seconds_per_round": args.seconds,
        "rounds": args.rounds,
        "summary": summary,
        "goal": "files+store within 5 % of files-only (>= 95 %)",
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"\nc={args.concurrency}, {args.rounds} interleaved rounds of {args.seconds:.0f} s, medians:")
        for mode in MODES:
            s = summary[mode]
            print(
                f"  {mode:<12} {s['rps_median']:>7} req/s ({s['pct_of_files_only']} % of files only)  "
                f"p99 {s['p99_ms_median']} ms  CPU {s['cpu_ms_per_request_median']} ms/req "
                f"({s['cpu_pct_of_files_only']} %)  rounds {s['rounds_rps']}  errors {s['errors']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
