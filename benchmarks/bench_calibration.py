"""Calibration figures of the shipped models: ECE, accuracy and confidence before and after temperature scaling.

    python benchmarks/bench_calibration.py --datasets ../shared/datasets [--json]

For each model (digits on MNIST, fashion on Fashion-MNIST) it computes the raw logits of the 10,000 test
images, refits the temperature on the fixed "fit" half (``digitrec.calibration.calibration_split``) and
checks it equals the one stored in model.json, then prints, for the held-out half and for the full test
set: ECE (15 equal-width bins) at T = 1 and at the stored T, accuracy at both, median confidence, and the
share of predictions at 0.99 or more. "noise floor" is the ECE a perfectly calibrated model with the same
confidences would show on that many images (mean of 200 draws of its labels): the part of the figure
that is sampling noise rather than miscalibration.
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

import numpy as np  # noqa: E402

from digitrec import calibration, datasets  # noqa: E402
from digitrec.recognizer import DigitRecognizer  # noqa: E402
from digitrec.training import to_inputs  # noqa: E402


def noise_floor(probabilities: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE when each prediction is right with exactly its stated confidence."""
    rng = np.random.default_rng(seed)
    confidence = probabilities.max(axis=1)
    values = []
    for _ in range(draws):
        right = rng.random(len(confidence)) < confidence
        # two-class stand-in with the same top probability; label 0 is the prediction
        p = np.stack([confidence, 1.0 - confidence], axis=1)
        values.append(calibration.expected_calibration_error(p, np.where(right, 0, 1)))
    return float(np.mean(values))


def measure(model: str, data_dir: Path | None) -> dict:
    recognizer = DigitRecognizer.load(model)
    dataset = calibration.dataset_of(recognizer.metadata)
    images, labels = datasets.load_split(dataset, "test", data_dir)
    logits = recognizer.logits(to_inputs(images))
    stored = recognizer.temperature
    fit, held_out = calibration.calibration_split(len(labels))
    refit = calibration.fit_temperature(logits[fit], labels[fit])
    result = {"model": model, "dataset": dataset, "stored_temperature": stored, "refit_temperature": refit}
    for part, index in (("held_out", held_out), ("test", np.arange(len(labels)))):
        before = calibration.softmax(logits[index], 1.0)
        after = calibration.softmax(logits[index], stored)
        result[part] = {
            "images": int(len(index)),
            "before": calibration.summary(before, labels[index]),
            "after": calibration.summary(after, labels[index]),
            "noise_floor_after": noise_floor(after),
        }
    # what the service returns: the recognizer's own probabilities (folded graph, calibrated)
    served = recognizer.predict_proba(to_inputs(images))
    result["served_ece"] = calibration.expected_calibration_error(served, labels)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, help="folder with mnist/ and fashion-mnist/ ($DIGITREC_DATASETS)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(model, args.datasets) for model in ("digits", "fashion")]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        "| model | T (stored / refit) | images | ECE T=1 | ECE T | noise floor | accuracy T=1 / T "
        "| median conf T=1 / T | conf >= 0.99 T=1 / T |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        for part, label in (("held_out", "held-out half"), ("test", "full test set")):
            b, a = r[part]["before"], r[part]["after"]
            print(
                f"| {r['model']} ({label}) | {r['stored_temperature']:.4f} / {r['refit_temperature']:.4f} "
                f"| {r[part]['images']} | {100 * b['ece']:.2f} % | {100 * a['ece']:.2f} % "
                f"| {100 * r[part]['noise_floor_after']:.2f} % "
                f"| {100 * b['accuracy']:.2f} / {100 * a['accuracy']:.2f} % "
                f"| {b['median_confidence']:.4f} / {a['median_confidence']:.4f} "
                f"| {100 * b['share_at_0_99']:.1f} / {100 * a['share_at_0_99']:.1f} % |"
            )
    print()
    for r in results:
        print(f"{r['model']}: ECE of the probabilities the recognizer serves {100 * r['served_ece']:.2f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
