"""Evaluate a model on a test set: accuracy, per-class accuracy, confusion matrix, worst mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from digitrec.learning import datasets
from digitrec.model.calibration import expected_calibration_error
from digitrec.model.inputs import to_inputs
from digitrec.model.recognizer import DigitRecognizer


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def evaluate(
    model: str | Path = "digits",
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    report_dir: Path | None = None,
    worst: int = 32,
) -> dict[str, Any]:
    """Score ``model`` on the test split of its dataset; write PNGs to ``report_dir`` if given."""
    recognizer = DigitRecognizer.load(model)
    name = dataset or ("fashion" if recognizer.metadata.get("dataset") == "fashion-mnist" else "mnist")
    images, labels = datasets.load_split(name, "test", data_dir, download)
    proba = np.concatenate(
        [recognizer.predict_proba(to_inputs(images[i : i + 1000])) for i in range(0, len(images), 1000)]
    )
    predicted = proba.argmax(1)
    classes = recognizer.class_names
    matrix = confusion_matrix(labels, predicted, len(classes))
    per_class = {classes[c]: float(matrix[c, c] / max(1, matrix[c].sum())) for c in range(len(classes))}
    wrong = np.flatnonzero(predicted != labels)
    # Worst = the mistakes the model was most sure of.
    wrong = wrong[np.argsort(-proba[wrong, predicted[wrong]])][:worst]
    report: dict[str, Any] = {
        "model": recognizer.name,
        "model_version": recognizer.version,
        "dataset": datasets.dataset_info(name).folder,
        "examples": int(len(labels)),
        "accuracy": float(np.mean(predicted == labels)),
        "errors": int(np.sum(predicted != labels)),
        "per_class_accuracy": per_class,
        "temperature": recognizer.temperature,
        "ece": expected_calibration_error(proba, labels),
        "median_confidence": float(np.median(proba.max(1))),
        "confusion_matrix": matrix.tolist(),
        "worst_mistakes": [
            {
                "index": int(i),
                "true": classes[labels[i]],
                "predicted": classes[predicted[i]],
                "confidence": float(proba[i, predicted[i]]),
            }
            for i in wrong
        ],
        "confusion_matrix_png": None,
        "mistakes_png": None,
    }
    if report_dir is not None:
        from digitrec.learning.plots import confusion_matrix_png, mistakes_grid_png

        report_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{recognizer.name}-{report['dataset']}"
        cm_path, mistakes_path = report_dir / f"{stem}-confusion.png", report_dir / f"{stem}-mistakes.png"
        title = f"{recognizer.name} on {report['dataset']} test: {100 * report['accuracy']:.2f}%"
        confusion_matrix_png(matrix, classes, cm_path, title)
        captions = [f"{m['true']}→{m['predicted']} {100 * m['confidence']:.0f}%" for m in report["worst_mistakes"]]
        mistakes_grid_png(images[wrong], captions, mistakes_path, f"most confident mistakes ({len(wrong)})")
        report["confusion_matrix_png"], report["mistakes_png"] = str(cm_path), str(mistakes_path)
    return report
