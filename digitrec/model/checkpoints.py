"""Model directories: a ``tf.train.Checkpoint`` (prefix ``model``) plus ``model.json`` describing it.

Where a model name is looked up, in order: an explicit ``models_dir`` (the service passes
``<data dir>/trained_models``, the Docker volume), ``$DIGITREC_MODELS_DIR``, the checkout's
``data/trained_models``, and the copy ``pip install`` puts under ``<prefix>/share/digitrec``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
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


@contextlib.contextmanager
def staged_model_dir(out: Path) -> Iterator[Path]:
    """A private folder beside ``out`` to write a model into; on success it replaces ``out`` whole, so
    the service never loads half a model, and on failure it is removed and ``out`` stays as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.chmod(0o755)  # mkdtemp makes it private; a model directory is read by the service's user
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
