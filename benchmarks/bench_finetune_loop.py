"""The feedback loop at full size: misread style -> HTTP predictions -> corrections -> finetune -> hot swap.

    python benchmarks/bench_finetune_loop.py --datasets ../shared/datasets --style dotted [--images 300]
        [--fresh 1000] [--seed 0] [--json] [-- FINETUNE OPTIONS]
    python benchmarks/bench_finetune_loop.py --datasets ../shared/datasets --sequence dotted,bubbly,continental

1. A real service (waitress on 127.0.0.1, SQLite records, models dir in a scratch folder, polling for
   promotions every second) serves the shipped digits model.
2. ``--images`` renderings of MNIST *training* digits in the style (tests/finetune_styles.py) are POSTed
   to /api/v1/predict and each is corrected through /api/v1/records/<id>/correction with its true label.
3. ``digitrec finetune digits`` runs as its own process against the service's data dir (options after
   ``--`` are passed to it, e.g. ``-- --steps 600`` or ``-- --distill-from parent``); its wall and CPU
   time (and how much of the wall time went to training and to the refusal head) and the load average
   are recorded.
4. The benchmark waits until the running service answers with the new version (hot swap, no restart).
5. Accuracy on ``--fresh`` renderings of MNIST *test* digits (never sent, never trained on), before
   (parent) and after (the new version, checked over HTTP too when promoted), and the MNIST test
   accuracy of the new version.

``--sequence A,B,C`` runs rounds on one data dir, one style after another (each round's corrections
stay in the records, as they would in a service), and before and after every round reads the fresh
images of every style of the sequence: a style "keeps" what it gained when its accuracy after the last
round is at most 2 points below its accuracy after its own round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from finetune_loop import run_loop  # noqa: E402
from finetune_styles import STYLES  # noqa: E402


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def round_row(r: dict) -> str:
    f = r["finetune"]
    decision = "promoted" if f["promoted"] else ("passed, not promoted" if f["gate_passed"] else "refused")
    return (
        f"| {r['style']} | {r['sent']} ({r['misread']} misread) | {pct(r['style_errors_before'])} | "
        f"{pct(r['style_errors_after'])} (x{r['error_ratio']:.2f}) | {pct(f['parent_test_accuracy'])} -> "
        f"{pct(f['test_accuracy'])} | {pct(f['parent_holdout_accuracy'])} -> {pct(f['holdout_accuracy'])} | "
        f"{decision} | {r['finetune_seconds'] / 60:.1f} min wall ({f['training_seconds']:.0f} s training, "
        f"{f['refusal_head_seconds']:.0f} s refusal head), {r['finetune_cpu_seconds'] / 60:.1f} min CPU, "
        f"load {r['load_average'][0]}-{r['load_average'][1]} |"
    )


def print_rounds(rounds: list[dict]) -> None:
    print(
        "\n| style | sent | errors before (fresh) | errors after | MNIST test parent -> new | held-out "
        "corrections | gate | finetune |\n|---|---|---|---|---|---|---|---|"
    )
    for r in rounds:
        print(round_row(r))
    for r in rounds:
        f = r["finetune"]
        refused = f"{pct(r['style_refused_before'])} -> {pct(r['style_refused_after'])}"
        print(f"\n{r['style']}: {'; '.join(f['reasons'])}; swap seen after {r.get('swap_seconds')} s; served "
              f"version over HTTP on 200 fresh images: {r.get('served_http_accuracy_sample')}; fresh images "
              f"refused as not a digit: {refused}")  # fmt: skip
    if len(rounds) > 1:
        learnt = [r["style"] for r in rounds]
        print("\n| fresh-image accuracy after round | " + " | ".join(learnt) + " | MNIST test |")
        print("|---" * (len(learnt) + 2) + "|")
        print("| shipped | " + " | ".join(pct(rounds[0]["styles_before"][s]) for s in learnt)
              + f" | {pct(rounds[0]['mnist_test_before'])} |")  # fmt: skip
        for r in rounds:
            decision = "" if r["finetune"]["promoted"] else " (refused)"
            print(f"| {r['style']}{decision} | " + " | ".join(pct(r["styles_after"][s]) for s in learnt)
                  + f" | {pct(r['mnist_test_after'])} |")  # fmt: skip
        # what serves at the end: the last promoted version (a refused one never served)
        promoted = [r for r in rounds if r["finetune"]["promoted"]]
        if not promoted:
            return
        last = promoted[-1]
        for r in promoted[:-1]:
            s = r["style"]
            gained = r["styles_after"][s] - r["styles_before"][s]
            lost = r["styles_after"][s] - last["styles_after"][s]
            print(f"{s}: gained {100 * gained:.2f} points in its round, {100 * lost:+.2f} lost by the serving "
                  f"version ({'kept' if lost <= 0.02 else 'NOT kept'}: at most 2 points)")  # fmt: skip
        drop = rounds[0]["mnist_test_before"] - last["mnist_test_after"]
        print(f"MNIST test: shipped {pct(rounds[0]['mnist_test_before'])}, the serving version after the last "
              f"round {pct(last['mnist_test_after'])} ({100 * drop:+.2f} points lost; at most 0.05)")  # fmt: skip


def main() -> int:
    argv = sys.argv[1:]
    passed = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, help="folder with mnist/ ($DIGITREC_DATASETS)")
    parser.add_argument("--style", choices=sorted(STYLES), default="dotted")
    parser.add_argument("--sequence", help="styles learnt one after another, comma-separated")
    parser.add_argument("--images", type=int, default=300, help="styled images sent and corrected per style")
    parser.add_argument("--fresh", type=int, default=1000, help="fresh styled test images per style (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="which training digits are sent, and the fine-tune's seed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sequence = args.sequence.split(",") if args.sequence else [args.style]
    unknown = [s for s in sequence if s not in STYLES]
    if unknown:
        parser.error(f"unknown style(s) {unknown}; known: {sorted(STYLES)}")
    log = (lambda m: None) if args.json else (lambda m: print(m, flush=True))
    log(f"machine: {os.cpu_count()} cores, {cpu_model()}, load average {os.getloadavg()}, seed {args.seed}")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="finetune-loop-") as work:
        for style in sequence:
            rounds.append(run_loop(Path(work), args.datasets, style, args.images, args.fresh, passed,
                                   measure=sequence, seed=args.seed, log=log))  # fmt: skip
    if args.json:
        print(json.dumps({"cores": os.cpu_count(), "cpu": cpu_model(), "rounds": rounds}, indent=2))
        return 0
    print_rounds(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
