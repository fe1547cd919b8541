"""How often a digits model misreads each handwriting style of tests/finetune_styles.py.

    python benchmarks/bench_finetune_styles.py --datasets ../shared/datasets [--fresh 2000] [--model digits]
        [--json]

For each style: ``--fresh`` MNIST *test* digits the style applies to (drawn with seed 1), redrawn in the
style as PNG uploads, read by the model through its own preprocessing (as the service does); prints the
misread rate overall and per digit, and what the most common wrong answer was.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
from finetune_styles import STYLES  # noqa: E402

from digitrec.learning import datasets  # noqa: E402
from digitrec.model.recognizer import DigitRecognizer  # noqa: E402


def misread(model: DigitRecognizer, style: str, images: np.ndarray, labels: np.ndarray, count: int) -> dict:
    """The style's misread rate on ``count`` of ``images`` (seed 1), overall and per digit."""
    chosen = STYLES[style].pick(labels, count, np.random.default_rng(1))
    truth = labels[chosen]
    predicted = np.array([p.label for p in model.predict_batch([STYLES[style].png(images[i], truth[k])
                                                                 for k, i in enumerate(chosen)])])  # fmt: skip
    wrong = predicted != truth
    per_digit = {}
    for digit in np.unique(truth):
        mine = truth == digit
        answers = np.bincount(predicted[mine & wrong], minlength=10)
        per_digit[int(digit)] = {
            "misread": float(wrong[mine].mean()),
            "images": int(mine.sum()),
            "read_as": int(answers.argmax()) if answers.any() else None,
        }
    return {"style": style, "images": count, "misread": float(wrong.mean()), "per_digit": per_digit}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, help="folder with mnist/ ($DIGITREC_DATASETS)")
    parser.add_argument("--fresh", type=int, default=2000, help="styled test digits per style (default 2000)")
    parser.add_argument("--model", default="digits", help="model name or model directory (default: digits)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    images, labels = datasets.load_split("mnist", "test", args.datasets)
    model = DigitRecognizer.load(args.model)
    results = [misread(model, style, images, labels, args.fresh) for style in STYLES]
    if args.json:
        print(json.dumps({"model": model.version, "styles": results}, indent=2))
        return 0
    print(f"model {model.name} {model.version}\n")
    print("| style | images | misread | per digit (misread %, most common wrong answer) |")
    print("|---|---|---|---|")
    for r in results:
        digits = ", ".join(
            f"{d}: {100 * v['misread']:.0f}" + (f" (as {v['read_as']})" if v["read_as"] is not None else "")
            for d, v in r["per_digit"].items()
        )
        print(f"| {r['style']} | {r['images']} | {100 * r['misread']:.1f} % | {digits} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
