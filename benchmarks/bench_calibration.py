"""Calibration figures of the shipped models: ECE, accuracy and confidence before and after temperature scaling.

    python benchmarks/bench_calibration.py --datasets ../shared/datasets [--json]

For each model (digits on MNIST, fashion on Fashion-MNIST) it computes the raw logits of the 10,000 test
images. A model with a validation split (model.json "validation", ``digitrec train --validation``) has its
temperature refitted on those training images (checked against the one stored in model.json), and is
judged on the full test set, which the fit never saw. A model without one (legacy) is refitted on the
fixed "fit" half of the test set and judged on the other half and, labelled as including the fit half,
on the full test set. For each: ECE (15 equal-width bins) at T = 1 and at the stored T, accuracy at both,
median confidence, and the share of predictions at 0.99 or more. "noise floor" is the ECE a perfectly
calibrated model with the same confidences would show on that many images (mean of 200 draws of its
labels): the part of the figure that is sampling noise rather than miscalibration. "T by ECE" is the
alternative temperature that minimises the ECE itself on the fit images, and the test ECE it gives.
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

from digitrec.learning import datasets, validation  # noqa: E402
from digitrec.model import calibration  # noqa: E402
from digitrec.model.inputs import to_inputs  # noqa: E402
from digitrec.model.recognizer import DigitRecognizer  # noqa: E402


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
    split = validation.declared(recognizer.metadata)
    parts: list[tuple[str, np.ndarray, np.ndarray]] = []  # (name, logits, labels) reported
    if split is not None:
        x_train, y_train = datasets.load_split(dataset, "train", data_dir)
        _, val_index = validation.rebuild(split, y_train)
        fit_logits, fit_labels = recognizer.logits(to_inputs(x_train[val_index])), y_train[val_index]
        parts.append(("validation", fit_logits, fit_labels))
        parts.append(("test", logits, labels))
        fitted_on = f"validation split ({len(val_index)} training images)"
    else:
        fit, held_out = calibration.calibration_split(len(labels))
        fit_logits, fit_labels = logits[fit], labels[fit]
        parts.append(("held_out", logits[held_out], labels[held_out]))
        parts.append(("test", logits, labels))
        fitted_on = "fixed half of the test set (legacy)"
    refit = calibration.fit_temperature(fit_logits, fit_labels)
    by_ece = calibration.fit_temperature_ece(fit_logits, fit_labels)
    result = {
        "model": model,
        "dataset": dataset,
        "version": recognizer.metadata.get("version"),
        "fitted_on": fitted_on,
        "stored_temperature": stored,
        "refit_temperature": refit,
        "ece_objective_temperature": by_ece,
        "test_ece_at_ece_objective_temperature": calibration.expected_calibration_error(
            calibration.softmax(logits, by_ece), labels
        ),
    }
    for part, part_logits, part_labels in parts:
        before = calibration.softmax(part_logits, 1.0)
        after = calibration.softmax(part_logits, stored)
        result[part] = {
            "images": int(len(part_labels)),
            "before": calibration.summary(before, part_labels),
            "after": calibration.summary(after, part_labels),
            "noise_floor_after": noise_floor(after),
        }
    # what the service returns: the recognizer's own probabilities (folded graph, calibrated)
    served = recognizer.predict_proba(to_inputs(images))
    result["served_ece"] = calibration.expected_calibration_error(served, labels)
    return result


LABELS = {
    "validation": "validation split, fit",
    "held_out": "held-out test half",
    "test": "full test set",
}


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
        for part in ("validation", "held_out", "test"):
            if part not in r:
                continue
            label = LABELS[part] + (" incl. the fit half" if part == "test" and "held_out" in r else "")
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
        print(
            f"{r['model']} (version {r['version']}, fitted on the {r['fitted_on']}): ECE of the probabilities the "
            f"recognizer serves {100 * r['served_ece']:.2f} %; T minimising the ECE on the fit images "
            f"{r['ece_objective_temperature']:.4f} gives {100 * r['test_ece_at_ece_objective_temperature']:.2f} % "
            "on the full test set"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
