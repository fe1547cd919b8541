"""Three replicas behind HAProxy on one host: throughput and p99 at c=32, and the requests that fail while
one replica is killed (SIGKILL) and comes back.

The replicas are real service processes (webservice.py) on one data folder (SQLite, or Cassandra when
CASSANDRA_CONTACT_POINTS is set), each with its own spool, images kept in the store only; HAProxy is
Debian's, with the config tests/cluster_helpers.py generates (round robin, GET /readyz every 500 ms,
out after 2 failures, back after 2 successes). The load generator is bench_http.py's (separate
processes, keep-alive clients). In the same run, the same load goes straight to one replica, as the
single-process reference.

With CASSANDRA_CONTACT_POINTS set and no CASSANDRA_KEYSPACE, the replicas write to a throw-away keyspace
that is dropped at the end.

Usage: python benchmarks/bench_cluster.py [--seconds 10] [--concurrency 32] [--kill-seconds 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from bench_http import digit_png, multipart, run_load  # noqa: E402
from cluster_helpers import cluster  # noqa: E402


def run_cluster(args: argparse.Namespace, env: dict[str, str], body: bytes, headers: dict, result: dict) -> None:
    path = "/api/v1/predict"
    c = args.concurrency
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        with cluster(Path(tmp), env=env) as (replicas, proxy):
            run_load(proxy.port, path, body, headers, c, 3.0)  # warm-up, not reported
            result["haproxy_3_replicas"] = run_load(proxy.port, path, body, headers, c, args.seconds)
            result["one_replica_direct"] = run_load(replicas[0].port, path, body, headers, c, args.seconds)
            for name in ("haproxy_3_replicas", "one_replica_direct"):
                row = result[name]
                print(
                    f"  {name:<20} c={c} {row['rps']} req/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                    f"errors {row['errors']}",
                    file=sys.stderr,
                )

            victim = replicas[1]
            timeline: dict[str, float] = {}
            load: dict = {}

            def drive() -> None:
                load.update(run_load(proxy.port, path, body, headers, c, args.kill_seconds))

            driver = threading.Thread(target=drive)
            started = time.monotonic()
            driver.start()
            time.sleep(args.kill_seconds / 5)
            victim.kill9()
            killed = time.monotonic()
            timeline["killed_at_s"] = round(killed - started, 2)
            timeline["down_in_haproxy_after_s"] = round(proxy.wait_for(victim.name, "DOWN", timeout=10), 2)
            victim.start()
            timeline["process_back_after_s"] = round(time.monotonic() - killed, 2)
            proxy.wait_for(victim.name, "UP", timeout=60)
            timeline["up_in_haproxy_after_s"] = round(time.monotonic() - killed, 2)
            driver.join()
            result["kill_and_return"] = {**load, **timeline, "load_seconds": args.kill_seconds}
            row = result["kill_and_return"]
            print(
                f"  kill -9 and return   c={c} {row['requests']} answered, {row['errors']} failed; "
                f"DOWN after {row['down_in_haproxy_after_s']} s, process back after {row['process_back_after_s']} s,"
                f" UP after {row['up_in_haproxy_after_s']} s",
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per throughput measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="clients (default 32)")
    parser.add_argument("--kill-seconds", type=float, default=45.0, help="length of the kill-and-return run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args(argv)
    body, headers = multipart(digit_png())
    c = args.concurrency
    result: dict = {"concurrency": c, "seconds": args.seconds}
    env = {"DIGITREC_KEEP_UPLOAD_FILES": "0"}
    throwaway = None
    if os.environ.get("CASSANDRA_CONTACT_POINTS", "").strip() and not os.environ.get("CASSANDRA_KEYSPACE"):
        throwaway = f"digitrec_bench_{uuid.uuid4().hex[:10]}"  # dropped at the end
        env["CASSANDRA_KEYSPACE"] = throwaway
    try:
        run_cluster(args, env, body, headers, result)
    finally:
        if throwaway is not None:
            from digitrec.records.cassandra_store import cassandraModule
            from digitrec.records.config import RecordsConfig

            admin = cassandraModule(config=RecordsConfig.from_env({**os.environ, "CASSANDRA_KEYSPACE": throwaway}))
            admin.drop_keyspace()
            admin.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        h, one, k = result["haproxy_3_replicas"], result["one_replica_direct"], result["kill_and_return"]
        print(f"\nthrough HAProxy, 3 replicas, c={c}: {h['rps']} req/s, p50 {h['p50_ms']} ms, p99 {h['p99_ms']} ms")
        print(f"one replica direct,     c={c}: {one['rps']} req/s, p50 {one['p50_ms']} ms, p99 {one['p99_ms']} ms")
        print(
            f"replica killed at {k['killed_at_s']} s of {k['load_seconds']:.0f} s and restarted: "
            f"{k['errors']} of {k['requests'] + k['errors']} requests failed"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
