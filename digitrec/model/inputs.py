"""The network's input contract: float32 rows of 784 pixels in [0, 1], white ink on black."""

from __future__ import annotations

import numpy as np


def to_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 784) in [0, 1]: the network's input contract."""
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0).copy()
