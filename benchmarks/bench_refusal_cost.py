"""What the refusal head costs ``predict``: this checkout against a baseline revision, interleaved.

    python benchmarks/bench_refusal_cost.py --baseline REV [--rounds 30] [--per-round 300] [--json]

The baseline revision (a commit before the refusal head, with its own code and shipped checkpoint) is
unpacked with ``git archive`` into a temporary folder. Two worker processes, one per tree, each load
the digits model of their own tree and wait; the parent then asks them in turn (ABBA order, so drift
in the machine's load falls on both sides alike) to run ``--per-round`` calls of
``DigitRecognizer.predict`` on examples/seven.png's bytes (decode, preprocess, model, Prediction), and
on a prepared 28x28 tensor (``predict_proba`` / ``predict_scores``: the model call alone). Reported:
the median over rounds of each side's time per call, and the median of the per-round ratios, in wall
time and in CPU time of the calling thread (the model call of one image runs in that thread; on a
loaded host the CPU time is the steadier figure, since waiting for a core is not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

WORKER = r"""
import sys, time
import numpy as np
try:
    from digitrec.model.recognizer import DigitRecognizer
except ImportError:
    from digitrec.recognizer import DigitRecognizer
model = DigitRecognizer.load("digits")
data = open(sys.argv[1], "rb").read()
x = model.prepare(data).tensor
call = getattr(model, "predict_scores", model.predict_proba)
for _ in range(50):
    model.predict(data); call(x)
print("ready", flush=True)
for line in sys.stdin:
    kind, n = line.split()
    fn = (lambda: model.predict(data)) if kind == "predict" else (lambda: call(x))
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(int(n)):
        fn()
    print(time.perf_counter() - start, time.thread_time() - cpu, flush=True)
"""


def start_worker(tree: Path, image: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("DIGITREC_MODELS_DIR", None)  # each side serves its own tree's shipped model
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(image)],
        cwd=tree,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert worker.stdout is not None
    if worker.stdout.readline().strip() != "ready":
        raise SystemExit(f"the worker in {tree} did not start")
    return worker


def ask(worker: subprocess.Popen, kind: str, n: int) -> tuple[float, float]:
    """(wall, CPU of the calling thread) seconds per call."""
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(f"{kind} {n}\n")
    worker.stdin.flush()
    wall, cpu = worker.stdout.readline().split()
    return float(wall) / n, float(cpu) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision without the refusal head")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--per-round", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    image = REPO / "examples" / "seven.png"
    with tempfile.TemporaryDirectory(prefix="digitrec-baseline-") as folder:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.baseline], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        workers = {"baseline": start_worker(Path(folder), image), "head": start_worker(REPO, image)}
        try:
            times: dict[str, dict[str, list[tuple[float, float]]]] = {
                k: {"baseline": [], "head": []} for k in ("predict", "model")
            }
            for r in range(args.rounds):
                order = ("baseline", "head") if r % 2 == 0 else ("head", "baseline")
                for kind in ("predict", "model"):
                    for side in order:
                        times[kind][side].append(ask(workers[side], kind, args.per_round))
        finally:
            for worker in workers.values():
                worker.stdin.close()  # type: ignore[union-attr]
                worker.wait(timeout=30)
    results = {}
    for kind, sides in times.items():
        for i, clock in enumerate(("wall", "cpu")):
            base, head = [t[i] for t in sides["baseline"]], [t[i] for t in sides["head"]]
            results[f"{kind}_{clock}"] = {
                "baseline_us": 1e6 * statistics.median(base),
                "head_us": 1e6 * statistics.median(head),
                "median_ratio": statistics.median(h / b for h, b in zip(head, base, strict=True)),
            }
    results["rounds"], results["per_round"], results["baseline"] = args.rounds, args.per_round, args.baseline
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for kind in ("predict", "model"):
            what = "predict(seven.png bytes)" if kind == "predict" else "model call on one prepared image"
            for clock in ("wall", "cpu"):
                r = results[f"{kind}_{clock}"]
                print(
                    f"{what}, {clock} time: baseline {r['baseline_us']:.1f} us, with the head {r['head_us']:.1f} us, "
                    f"median per-round ratio {r['median_ratio']:.3f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
