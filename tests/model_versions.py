"""Real extra model versions for the version and hot-swap tests, made cheaply from the shipped checkpoint.

A copy of the shipped checkpoint with another model.json version id is a real, loadable version; with
``logit_shift`` its final layer's bias is changed and saved with ``tf.train.Checkpoint``, so the version
also answers differently (no retraining, no mocks).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from digitrec.model import checkpoints

CHECKPOINT_FILES = ("model.json", "model.index", "model.data-00000-of-00001")


def copy_flat(source_root: Path, target_root: Path, name: str = "digits") -> Path:
    """The shipped flat model folder copied to ``target_root/name`` (checkpoint and model.json only)."""
    target = target_root / name
    target.mkdir(parents=True, exist_ok=True)
    for file_name in CHECKPOINT_FILES:
        shutil.copy2(source_root / name / file_name, target / file_name)
    return target


def make_version(
    source_root: Path,
    target_root: Path,
    version: str,
    name: str = "digits",
    *,
    logit_shift: dict[int, float] | None = None,
    metadata: dict | None = None,
) -> Path:
    """``target_root/name/version/`` holding the shipped checkpoint, relabelled (and optionally changed)."""
    source = source_root / name
    folder = target_root / name / version
    folder.mkdir(parents=True, exist_ok=True)
    for file_name in CHECKPOINT_FILES[1:]:
        shutil.copy2(source / file_name, folder / file_name)
    document = json.loads((source / "model.json").read_text())
    document.update({"version": version, **(metadata or {})})
    if logit_shift:
        import tensorflow as tf

        from digitrec.model.network import DigitNet, NetworkSpec

        network = DigitNet(NetworkSpec.from_json(document["params"]))
        tf.train.Checkpoint(model=network).read(str(source / checkpoints.CHECKPOINT_PREFIX)).expect_partial()
        bias = network.dense_b.numpy()
        for label, shift in logit_shift.items():
            bias[label] += shift
        network.dense_b.assign(bias)
        tf.train.Checkpoint(model=network).write(str(folder / checkpoints.CHECKPOINT_PREFIX))
        document.pop("domain", None)  # the rewritten checkpoint has the classifier only, no refusal head
    (folder / "model.json").write_text(json.dumps(document, indent=2))  # last: the version is complete now
    return folder
