"""What the refusal head's inputs and width cost a one-image prediction: prepare + model call, interleaved.

    python benchmarks/bench_head_size.py [--heads pooled_mean_max:128,final_mean_max:64] [--rounds 25] [--per-round 100]

The shipped digits classifier is folded (``FoldedNet``) once without a head and once per head with
that input layout (``digitrec.model.domain``) and hidden width (``--hidden 128,64`` alone: widths
with the shipped layout). The head's weights are random: the cost of a graph does not depend
on its values, only on its shapes. Each round runs ``prepare(examples/seven.png)`` and then one model
call ``--per-round`` times for every variant, in a shuffled order, in the calling thread; reported is
the median CPU time of the pair and its ratio to the variant without a head. Preparing in between
matters: a one-image call after the image work finds its weights out of the cache, which is where a
wide head costs most.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digitrec.model.domain import new_head  # noqa: E402
from digitrec.model.inline import InlineRunner  # noqa: E402
from digitrec.model.network import FoldedNet  # noqa: E402
from digitrec.model.recognizer import DigitRecognizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", default="", help="comma-separated LAYOUT:HIDDEN heads")
    parser.add_argument("--hidden", default="128,64,32", help="comma-separated head widths, with the shipped layout")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    recognizer = DigitRecognizer.load("digits")
    data = (REPO / "examples" / "seven.png").read_bytes()
    x = recognizer.prepare(data).tensor
    network, folded = recognizer._network, recognizer._inference
    variants = {"no head": FoldedNet(network, recognizer.precision, temperature=folded.temperature)}
    heads = [h.split(":") for h in args.heads.split(",")] if args.heads else []
    heads = heads or [[recognizer.domain.layout, w] for w in args.hidden.split(",")]
    for layout, width in heads:
        head = new_head(network, int(width), layout=layout)
        variants[f"{layout} {width}"] = FoldedNet(
            network, recognizer.precision, temperature=folded.temperature, head=head, layout=layout
        )
    runners = {name: InlineRunner(v.__call__.get_concrete_function()) for name, v in variants.items()}
    for run in runners.values():
        for _ in range(100):
            run(x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        order = list(runners.items())
        random.shuffle(order)
        for name, run in order:
            start = time.thread_time()
            for _ in range(args.per_round):
                recognizer.prepare(data)
                run(x)
            times[name].append((time.thread_time() - start) / args.per_round * 1e6)
    base = statistics.median(times["no head"])
    medians = {name: statistics.median(t) for name, t in times.items()}
    rows = [{"variant": n, "prepare_and_call_us": round(m, 1), "ratio": round(m / base, 3)} for n, m in medians.items()]
    if args.json:
        print(json.dumps({"precision": recognizer.precision, "rows": rows}, indent=2))
        return
    print(f"precision {recognizer.precision}; CPU time of prepare(seven.png) + one model call")
    for row in rows:
        print(f"{row['variant']:>20}  {row['prepare_and_call_us']:8.1f} us  {row['ratio']:.3f}x")


if __name__ == "__main__":
    main()
