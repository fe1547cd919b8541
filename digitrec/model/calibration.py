"""Calibrated confidence: temperature scaling of the logits, and the expected calibration error (ECE).

The shipped networks were trained with label smoothing, which teaches them never to say much more than
95 %: their confidence under-states how often they are right. One scalar ``T`` fixes that without
touching the ranking of the classes: probabilities = softmax(logits / T). ``T`` is fitted by minimising
the negative log-likelihood on data the network never trained on, and stored in ``model.json`` as
``"calibration": {"temperature": T, ...}``; the recognizer folds it into its inference graph.

Which data: a model trained with a validation split (``digitrec train --validation N``, the default;
see ``digitrec.learning.validation``) has training images it never trained on. ``T`` is fitted on those, and the
ECE is reported on the full test set, which the fit never saw (``calibrate_on_validation``).

Older models (the flat checkpoints trained on all 60,000 training images) have no such images: the
only ones they have not seen are the test images. For them, ``calibrate`` cuts the test set into two
fixed halves (a seeded permutation, the same for every model and version), fits ``T`` on the "fit" half,
and reports the ECE on the other half and on the full test set. That figure is labelled as such: the
full-test figure then includes the images ``T`` was fitted on.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from digitrec.errors import CheckpointError

ECE_BINS = 15
SPLIT_SEED = 12  # fixed: every model and version is calibrated on the same half of the test set
T_MIN, T_MAX = 0.05, 20.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true labels at this temperature."""
    z = np.asarray(logits, np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), labels]))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width confidence bins: sum over bins of (share of samples) x |accuracy -
    mean confidence|, where confidence is the top probability (Guo et al., 2017)."""
    p = np.asarray(probabilities, np.float64)
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == np.asarray(labels)
    # bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 goes into the first bin
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the NLL: a golden-section search on log T (the NLL is convex in
    1/T, so it has one minimum), after a coarse grid to bracket it."""
    labels = np.asarray(labels)
    grid = np.linspace(np.log(T_MIN), np.log(T_MAX), 41)
    losses = [nll(logits, labels, np.exp(g)) for g in grid]
    best = int(np.argmin(losses))
    lo, hi = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, np.exp(a)), nll(logits, labels, np.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2.0))


def calibration_split(n: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (fit, held-out) index halves of a test set of ``n`` images."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def summary(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, ECE, median and mean confidence, share of predictions at 0.99 or above."""
    p = np.asarray(probabilities, np.float64)
    confidence = p.max(axis=1)
    return {
        "accuracy": float(np.mean(p.argmax(axis=1) == labels)),
        "ece": expected_calibration_error(p, labels),
        "median_confidence": float(np.median(confidence)),
        "mean_confidence": float(np.mean(confidence)),
        "share_at_0_99": float(np.mean(confidence >= 0.99)),
    }


def fit_temperature_ece(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """The temperature with the lowest ECE on these logits: a grid of 401 values of log T, then a finer
    grid around the best (the ECE is piecewise constant in T, so no derivative-based search)."""
    labels = np.asarray(labels)

    def ece(log_t: float) -> float:
        return expected_calibration_error(softmax(logits, float(np.exp(log_t))), labels, bins)

    grid = np.linspace(np.log(T_MIN), np.log(T_MAX), 401)
    best = grid[int(np.argmin([ece(g) for g in grid]))]
    step = grid[1] - grid[0]
    fine = np.linspace(best - step, best + step, 41)
    return float(np.exp(fine[int(np.argmin([ece(g) for g in fine]))]))


OBJECTIVES = {"nll": fit_temperature, "ece": fit_temperature_ece}


def calibrate_on_validation(
    validation_logits: np.ndarray,
    validation_labels: np.ndarray,
    test_logits: np.ndarray,
    test_labels: np.ndarray,
    dataset: str,
    split: dict[str, Any],
    previous: float = 1.0,
    objective: str = "nll",
) -> dict[str, Any]:
    """Fit T on the validation split's logits; ECE before and after on the full test set (never fitted on).

    ``split``: the model's ``"validation"`` block (``digitrec.learning.validation.describe``).
    """
    v_logits, v_labels = np.asarray(validation_logits, np.float64), np.asarray(validation_labels)
    t_logits, t_labels = np.asarray(test_logits, np.float64), np.asarray(test_labels)
    temperature = OBJECTIVES[objective](v_logits, v_labels)
    before, after = softmax(t_logits, previous), softmax(t_logits, temperature)
    return {
        "temperature": round(temperature, 6),
        "method": f"temperature scaling, {objective.upper()} minimised on the validation split",
        "fit_split": "validation",
        "fitted_on": f"validation split: {len(v_labels)} {dataset} training images never trained on "
        f'(seed {split.get("seed")}, {split.get("per_class")} per class; model.json "validation")',
        "held_out": f"the full {dataset} test set ({len(t_labels)} images), not used for the fit",
        "bins": ECE_BINS,
        "before": {
            "temperature": previous,
            "validation": summary(softmax(v_logits, previous), v_labels),
            "test": summary(before, t_labels),
        },
        "after": {
            "validation": summary(softmax(v_logits, temperature), v_labels),
            "test": summary(after, t_labels),
        },
        "ece_before": round(expected_calibration_error(before, t_labels), 6),
        "ece_after": round(expected_calibration_error(after, t_labels), 6),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def calibrate(logits: np.ndarray, labels: np.ndarray, dataset: str, previous: float = 1.0) -> dict[str, Any]:
    """Legacy, for models without a validation split: fit T on the fit half of a test set's logits; the
    ``calibration`` block for ``model.json``.

    ``previous``: the temperature the model used until now (for the "before" figures).
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    fit, held_out = calibration_split(len(labels))
    temperature = fit_temperature(logits[fit], labels[fit])
    before_all, after_all = softmax(logits, previous), softmax(logits, temperature)
    return {
        "temperature": round(temperature, 6),
        "method": "temperature scaling, NLL minimised on the fit half",
        "fit_split": "test_half",
        "fitted_on": f"{dataset} test set, fixed half (seed {SPLIT_SEED}): {len(fit)} images "
        "(legacy: the model has no validation split)",
        "held_out": f"the other {len(held_out)} images of the {dataset} test set",
        "bins": ECE_BINS,
        "before": {
            "temperature": previous,
            "held_out": summary(before_all[held_out], labels[held_out]),
            "test": summary(before_all, labels),
        },
        "after": {
            "held_out": summary(after_all[held_out], labels[held_out]),
            "test": summary(after_all, labels),
        },
        "ece_before": round(expected_calibration_error(before_all, labels), 6),
        "ece_after": round(expected_calibration_error(after_all, labels), 6),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def temperature_of(metadata: dict[str, Any]) -> float:
    """The temperature a model.json asks for (1.0 when it was never calibrated)."""
    block = metadata.get("calibration")
    if block is None:
        return 1.0
    value = block.get("temperature") if isinstance(block, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not T_MIN <= value <= T_MAX:
        raise CheckpointError(
            f"model.json calibration.temperature must be a number between {T_MIN} and {T_MAX}, not {value!r}"
        )
    return float(value)


def dataset_of(metadata: dict[str, Any]) -> str:
    """The dataset name (``mnist`` / ``fashion``) a model was trained on, from its model.json."""
    return "fashion" if metadata.get("dataset") == "fashion-mnist" else "mnist"
