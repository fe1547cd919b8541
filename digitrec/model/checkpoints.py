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

from digitrec.errors import ModelNotFoundError

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


def resolve_model_dir(model: str | os.PathLike[str], models_dir: str | os.PathLike[str] | None = None) -> Path:
    """Turn a model name ("digits") or a path into the directory holding its checkpoint.

    A name resolves to the version that serves it (see ``digitrec.model.versions``)."""
    path = Path(model)
    if path.is_dir():
        if is_model_dir(path):
            return path
        raise ModelNotFoundError(f"{path} has no {METADATA_FILE} and {CHECKPOINT_PREFIX}.index checkpoint")
    name = str(model)
    if os.sep in name or "/" in name or name in ("", ".", ".."):
        raise ModelNotFoundError(f"model directory {name!r} does not exist")
    from digitrec.model.versions import promoted_version  # versions builds on this module

    return promoted_version(name, models_dir).path


def read_metadata(model_dir: Path) -> dict[str, Any]:
    with open(model_dir / METADATA_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def write_metadata(model_dir: Path, metadata: dict[str, Any]) -> None:
    """Write ``model.json`` atomically, so a reader never sees half a file."""
    tmp = model_dir / f".{METADATA_FILE}.tmp"
    tmp.write_text(json.dumps(metadata, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, model_dir / METADATA_FILE)
