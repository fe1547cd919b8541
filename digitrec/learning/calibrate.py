"""Fit the temperature of a model directory on its validation split and write it into its model.json.

The maths (temperature fits, ECE) is in ``digitrec.model.calibration``, beside the inference code that
applies the temperature; this module loads the model and the data to feed it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from digitrec.errors import CheckpointError
from digitrec.learning import datasets, validation
from digitrec.model import checkpoints
from digitrec.model.calibration import OBJECTIVES, calibrate, calibrate_on_validation, dataset_of
from digitrec.model.inputs import to_inputs
from digitrec.model.recognizer import DigitRecognizer


def calibrate_model_dir(
    model_dir: Path,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    write: bool = True,
    objective: str = "nll",
) -> dict[str, Any]:
    """Fit the temperature of the model in ``model_dir``; store it in its model.json.

    On the model's validation split when its model.json declares one, else (legacy) on the fixed half
    of its test set (NLL only). The "before" figures use the temperature the model had (1.0 the first
    time), so calling this twice refits from the raw logits and reports the second call's before = the
    first call's after.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, not {objective!r}")
    recognizer = DigitRecognizer()
    recognizer.Load_Model(model_dir, checkpoints.CHECKPOINT_PREFIX)
    dataset = dataset_of(recognizer.metadata)
    folder = datasets.dataset_info(dataset).folder
    images, labels = datasets.load_split(dataset, "test", data_dir, download)
    logits = recognizer.logits(to_inputs(images))
    split = validation.declared(recognizer.metadata)
    if split is not None:
        x_train, y_train = datasets.load_split(dataset, "train", data_dir, download)
        _, val_index = validation.rebuild(split, y_train)
        val_logits = recognizer.logits(to_inputs(x_train[val_index]))
        block = calibrate_on_validation(
            val_logits, y_train[val_index], logits, labels, folder, split, recognizer.temperature, objective
        )
    else:
        if objective != "nll":
            raise ValueError("the legacy test-half calibration fits by NLL only")
        block = calibrate(logits, labels, folder, previous=recognizer.temperature)
    if write:
        metadata = checkpoints.read_metadata(model_dir)
        metadata["calibration"] = block
        try:
            checkpoints.write_metadata(model_dir, metadata)
        except OSError as exc:
            raise CheckpointError(f"cannot write {model_dir / checkpoints.METADATA_FILE}: {exc}") from exc
    return block
