"""Model directories: a ``tf.train.Checkpoint`` (prefix ``model``) plus ``model.json`` describing it.

Where a model name is looked up, in order: an explicit ``models_dir`` (the service passes
``<data dir>/trained_models``, the Docker volume), ``$DIGITREC_MODELS_DIR``, the checkout's
``data/trained_models``, and the copy ``pip install`` puts under ``<prefix>/share/digitrec``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

CHECKPOINT_PREFIX = "model"
METADATA_FILE = "model.json"
MODELS_ENV_VAR = "DIGITREC_MODELS_DIR"
SHIPPED_MODELS = ("digits", "fashion")


def shipped_models_dir() -> Path:
    """The models that ship with the package: the checkout's folder, else the installed copy."""
    checkout = Path(__file__).resolve().parents[2] / "data" / "trained_models"
    if (checkout / "digits" / METADATA_FILE).is_file():
        return checkout
    return Path(sys.prefix) / "share" / "digitrec" / "trained_models"


def is_model_dir(path: Path) -> bool:
    return (path / METADATA_FILE).is_file() and (path / f"{CHECKPOINT_PREFIX}.index").is_file()


def read_metadata(model_dir: Path) -> dict[str, Any]:
    with open(model_dir / METADATA_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def write_metadata(model_dir: Path, metadata: dict[str, Any]) -> None:
    """Write ``model.json`` atomically, so a reader never sees half a file."""
    tmp = model_dir / f".{METADATA_FILE}.tmp"
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, model_dir / METADATA_FILE)
