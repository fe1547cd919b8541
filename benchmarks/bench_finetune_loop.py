"""The feedback loop at full size: misread style -> HTTP predictions -> corrections -> finetune -> hot swap.

    python benchmarks/bench_finetune_loop.py --datasets ../shared/datasets [--images 600] [--fresh 2000]
        [--replay 20000] [--epochs 3] [--json]

1. A real service (waitress on 127.0.0.1, SQLite records, models dir in a scratch folder, polling for
   promotions every second) serves the shipped digits model.
2. ``--images`` thick-pen renderings of MNIST *training* digits (see tests/finetune_loop.py) are POSTed
   to /api/v1/predict and each is corrected through /api/v1/records/<id>/correction with its true label.
3. ``digitrec finetune digits`` runs as its own process against the service's data dir.
4. The benchmark waits until the running service answers with the new version (hot swap, no restart).
5. Accuracy on ``--fresh`` thick-pen renderings of MNIST *test* digits (never sent, never trained on),
   before (parent) and after (the version now serving, checked over HTTP too), and the MNIST test
   accuracy of the new version.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from finetune_loop import run_loop  # noqa: E402


def pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def print_table(result: dict) -> None:
    f = result["finetune"]
    rows = [
        (f"thick-pen accuracy, {result['fresh_images']} fresh images", result["style_accuracy_before"],
         result["style_accuracy_after"]),
        ("thick-pen errors", result["style_errors_before"], result["style_errors_after"]),
        ("MNIST test accuracy (10,000)", result["mnist_test_before"], result["mnist_test_after"]),
        (f"held-out corrections ({f['corrections_held_out']})", f["parent_holdout_accuracy"], f["holdout_accuracy"]),
    ]  # fmt: skip
    print("\n| figure | parent | fine-tuned |\n|---|---|---|")
    for label, before, after in rows:
        print(f"| {label} | {pct(before)} | {pct(after)} |")
    print(
        f"\nerrors x{result['error_ratio']:.2f}; sent {result['sent']} ({result['misread']} misread) in "
        f"{result['send_seconds']} s; trained on {f['corrections_train']} corrections + {result['replay']} replayed, "
        f"{result['epochs']} epochs; finetune took {result['finetune_seconds']} s; promoted {f['promoted']} "
        f"({'; '.join(f['reasons'])}); swap seen after {result.get('swap_seconds')} s; accuracy of the served "
        f"version over HTTP on 200 fresh images {result.get('served_http_accuracy_sample')}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, help="folder with mnist/ ($DIGITREC_DATASETS)")
    parser.add_argument("--images", type=int, default=600, help="styled images sent and corrected (default 600)")
    parser.add_argument("--fresh", type=int, default=2000, help="fresh styled test images (default 2000)")
    parser.add_argument("--replay", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="finetune-loop-") as work:
        result = run_loop(Path(work), args.datasets, args.images, args.fresh, args.replay, args.epochs,
                          log=(lambda m: None) if args.json else print)  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
