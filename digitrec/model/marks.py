"""``MarkScorer``: how likely a candidate mark is one whole digit, not a fragment or two run together.

The digit model names a fragment of a digit (half a 0 looks like a 1) or two touching digits (a 3
and a 1 can look like an 8) with high confidence, so its probabilities alone cannot tell a right cut
from a wrong one. The scorer is a small network trained on the candidate marks that
``digitrec.imaging.segment`` proposes for synthetic numbers made from MNIST training digits, each
labelled by whether it covers exactly one of the digits (``digitrec.learning.marks`` trains it).
It reads the mark as the model sees it (28x28) and its shape features
(``segment.FEATURE_NAMES``), and is used only to choose among segmentations.

It ships as a model directory (``data/trained_models/marks``: ``model.json`` and a TF checkpoint),
found like the digit models; inference runs in NumPy (a few thousand multiply-adds per mark), so a
reading still makes one call to the digit model.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.errors import CheckpointError, ModelNotFoundError
from digitrec.imaging.segment import Judge, Segmentation
from digitrec.model import checkpoints, versions

NAME = "marks"
# Marks the scorer gives less than this log-probability of being a whole digit are not shown to the
# digit model (most candidates are fragments, so this keeps a reading's one model call small); in
# the choice of a split they count as read with this log-probability.
UNLIKELY = float(np.log(0.02))
UNREAD_FIT = -10.0
MARK_BONUS = 1.0  # added per mark read: without it every extra mark only costs, and touching digits are read as fewer
ARCHITECTURE = "digitrec-mark-scorer"
# Weights, in the order the checkpoint stores them under "model/": two strided convolutions on the
# 28x28 mark, then one hidden layer over their output and the (standardised) shape features.
WEIGHTS = (
    "feature_mean",
    "feature_scale",
    "conv1_w",
    "conv1_b",
    "conv2_w",
    "conv2_b",
    "hidden_w",
    "hidden_b",
    "out_w",
    "out_b",
)


def _conv_stride2(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """'VALID' convolution with stride 2 and ReLU: x (n, H, W, C), w (k, k, C, O) -> (n, H', W', O)."""
    k, _, c, o = w.shape
    n, h, width = x.shape[:3]
    hh, ww = (h - k) // 2 + 1, (width - k) // 2 + 1
    # windows: (n, H', W', C, k, k), strided views of x (cheaper to set up than sliding_window_view);
    # one matrix product over (C, k, k).
    sn, sh, sw, sc = x.strides
    strides = (sn, 2 * sh, 2 * sw, sc, sh, sw)
    windows = np.lib.stride_tricks.as_strided(x, (n, hh, ww, c, k, k), strides, writeable=False)
    flat = windows.reshape(n * hh * ww, c * k * k)
    out = flat @ w.transpose(2, 0, 1, 3).reshape(c * k * k, o) + b
    return np.maximum(out, 0.0).reshape(n, hh, ww, o)


class MarkScorer:
    """Log-probability that each candidate mark is one whole digit."""

    def __init__(self, weights: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
        missing = [name for name in WEIGHTS if name not in weights]
        if missing:
            raise CheckpointError(f"mark scorer: missing weights {missing}")
        self.weights = {name: np.asarray(weights[name], np.float32) for name in WEIGHTS}
        self.metadata = metadata

    @classmethod
    def from_dir(cls, model_dir: Path) -> MarkScorer:
        from digitrec.runtime.tf_loader import tf

        metadata = checkpoints.read_metadata(model_dir)
        if metadata.get("architecture") != ARCHITECTURE:
            raise CheckpointError(f"{model_dir}: not a mark scorer ({metadata.get('architecture')!r})")
        try:
            reader = tf.train.load_checkpoint(str(model_dir / checkpoints.CHECKPOINT_PREFIX))
            weights = {name: reader.get_tensor(f"model/{name}/.ATTRIBUTES/VARIABLE_VALUE") for name in WEIGHTS}
        except (ValueError, tf.errors.OpError) as exc:
            raise CheckpointError(f"{model_dir}: unreadable mark scorer checkpoint ({exc})") from None
        return cls(weights, metadata)

    def log_whole(self, inputs: np.ndarray, features: np.ndarray) -> np.ndarray:
        """(n, 784) model inputs and (n, FEATURES) shape features -> (n,) log P(one whole digit)."""
        return -np.logaddexp(0.0, -self.logits(inputs, features))

    def logits(self, inputs: np.ndarray, features: np.ndarray) -> np.ndarray:
        w = self.weights
        x = np.asarray(inputs, np.float32).reshape(-1, 28, 28, 1)
        x = _conv_stride2(x, w["conv1_w"], w["conv1_b"])
        x = _conv_stride2(x, w["conv2_w"], w["conv2_b"])
        f = (np.asarray(features, np.float32) - w["feature_mean"]) * w["feature_scale"]
        hidden = np.maximum(np.concatenate([x.reshape(len(x), -1), f], axis=1) @ w["hidden_w"] + w["hidden_b"], 0.0)
        return (hidden @ w["out_w"] + w["out_b"])[:, 0]


@functools.lru_cache(maxsize=4)
def _load(model_dir: str, mtime: float) -> MarkScorer:
    return MarkScorer.from_dir(Path(model_dir))


def log_whole(segmentation: Segmentation, style: str) -> np.ndarray:
    """Per candidate of ``segmentation``: log P(one whole digit) from the serving scorer, zeros when
    none is installed or the marks are not digits (the scorer learned digits only)."""
    if style != "digit" or len(segmentation.candidates) == segmentation.pieces:
        return np.zeros(len(segmentation.candidates))  # one candidate per piece: nothing to choose
    scorer = _serving_scorer()
    if scorer is None:
        return np.zeros(len(segmentation.candidates))
    return scorer.log_whole(segmentation.inputs, segmentation.features)


def serving_judge(style: str) -> Judge | None:
    """What ``segment`` asks whether a blob is one whole digit before cutting it: the serving scorer's
    ``log_whole``; None for marks that are not digits or when no scorer is installed."""
    if style != "digit":
        return None
    scorer = _serving_scorer()
    return None if scorer is None else scorer.log_whole


@functools.lru_cache(maxsize=1)
def _serving_scorer() -> MarkScorer | None:
    """The scorer ``read`` uses, looked up once per process (a new one is taken up on restart)."""
    return load_scorer()


def load_scorer(models_dir: str | os.PathLike[str] | None = None) -> MarkScorer | None:
    """The serving mark scorer, loaded once per checkpoint; None when none is installed (reading then
    chooses by the digit model and the shape terms alone)."""
    try:
        model_dir = versions.resolve_model_dir(NAME, models_dir)
    except ModelNotFoundError:
        return None
    return _load(str(model_dir), (model_dir / checkpoints.METADATA_FILE).stat().st_mtime)
