"""The validation split: training images a model is never trained on, kept to calibrate its confidence.

``digitrec train --validation N`` holds out N of the training images, the same number from every class,
drawn with a seed. model.json records how (``"validation"``: dataset, seed, size, per-class count, the
rule, and a SHA-256 of the chosen indices), so calibration and fine-tuning can rebuild exactly the same
split from the training set later and check that they did.

The rule (``RULE``): for each class ``c`` in label order, the training-set indices of class ``c`` in
ascending order are shuffled with ``numpy.random.default_rng([seed, c]).permutation`` and the first
``per_class`` of them are validation images. The split is drawn from the full training set, before any
``--limit``, so it does not depend on how much of the rest is used.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from digitrec.errors import CheckpointError, ConfigurationError

DEFAULT_SIZE = 5000
DEFAULT_SEED = 0
RULE = (
    "stratified: for each class c in label order, the first per_class of "
    "numpy.random.default_rng([seed, c]).permutation(ascending training-set indices of class c)"
)


def split_indices(labels: np.ndarray, size: int, seed: int = DEFAULT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) index arrays, both ascending, of a training set with these ``labels``."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if size < 0 or size % len(classes):
        raise ConfigurationError(f"validation size must be a non-negative multiple of {len(classes)}, not {size}")
    per_class = size // len(classes)
    chosen = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        if per_class > len(members) - 1:
            raise ConfigurationError(
                f"validation size {size} asks for {per_class} images of class {c}, which has {len(members)}"
            )
        chosen.append(members[np.random.default_rng([seed, int(c)]).permutation(len(members))[:per_class]])
    validation = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    mask = np.ones(len(labels), bool)
    mask[validation] = False
    return np.flatnonzero(mask), validation


def digest(indices: np.ndarray) -> str:
    """SHA-256 of the ascending indices as little-endian int64: proves a rebuilt split is the same one."""
    return hashlib.sha256(np.sort(np.asarray(indices, "<i8")).tobytes()).hexdigest()


def describe(dataset_folder: str, labels: np.ndarray, validation: np.ndarray, seed: int) -> dict[str, Any]:
    """The ``"validation"`` block of model.json."""
    return {
        "dataset": dataset_folder,
        "split": "train",
        "size": int(len(validation)),
        "per_class": int(len(validation) // max(1, len(np.unique(labels)))),
        "seed": int(seed),
        "rule": RULE,
        "indices_sha256": digest(validation),
    }


def declared(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """The model's validation block, or None when it was trained without one (older models)."""
    block = metadata.get("validation")
    if not isinstance(block, dict) or not block.get("size"):
        return None
    return block


def rebuild(block: dict[str, Any], labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices from a model.json block; raises when they do not match its digest."""
    try:
        size, seed = int(block["size"]), int(block["seed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"model.json validation block needs integer size and seed: {block!r}") from exc
    train, validation = split_indices(labels, size, seed)
    expected = block.get("indices_sha256")
    if expected and digest(validation) != expected:
        raise CheckpointError(
            "the validation split rebuilt from model.json does not match its indices_sha256: "
            "is this the same training set?"
        )
    return train, validation
