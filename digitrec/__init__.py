"""digitrec: recognise handwritten digits (and clothing) with raw-TensorFlow models, and record every request.

The heavy parts (TensorFlow, cassandra-driver) load on first use of the names that need them, so
``import digitrec`` and the records CLI stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from digitrec.errors import (
    CheckpointError,
    ConfigurationError,
    DatasetError,
    DigitrecError,
    ImageTooLargeError,
    InvalidImageError,
    ModelNotFoundError,
    NoDigitFoundError,
    UnsupportedImageTypeError,
)

__version__ = "1.0.0"

_LAZY = {
    "DigitRecognizer": "digitrec.model.recognizer",
    "Prediction": "digitrec.model.recognizer",
    "load_input_image": "digitrec.imaging.preprocess",
    "cassandraModule": "digitrec.records.cassandra_store",
    "PredictionRecord": "digitrec.records.record",
}

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "DatasetError",
    "DigitrecError",
    "ImageTooLargeError",
    "InvalidImageError",
    "ModelNotFoundError",
    "NoDigitFoundError",
    "UnsupportedImageTypeError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'digitrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
