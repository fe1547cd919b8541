"""How a mark reaches the service: drawn on a canvas, or photographed on paper.

Both the refusal head's training images and its benchmark's images pass through these renderings and
then through ``preprocess.prepare``, so what the head learns from is what the model sees in service,
and it cannot tell digits from non-digits by how they were rendered (both get the same treatment).
Inputs are ink maps: float32 (H, W) in [0, 1], 1.0 where the ink is.
"""

from __future__ import annotations

import cv2
import numpy as np


def canvas(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark strokes on a white canvas (as the drawing page sends), or light on black (dark-mode apps)."""
    ink = np.clip(ink, 0.0, 1.0)
    if rng.random() < 0.8:
        image = 255.0 * (1.0 - ink)
    else:
        image = 255.0 * ink
    return image.astype(np.uint8)


def paper_photo(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink on off-white paper as a phone photo shows it: uneven light, grain, a little blur, JPEG."""
    h, w = ink.shape
    paper = rng.uniform(185, 245)
    ink_level = rng.uniform(20, 110)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h) * rng.uniform(0, 45)
    image = paper - ramp - (paper - ink_level) * np.clip(ink, 0.0, 1.0)
    grain = cv2.GaussianBlur(rng.normal(0, rng.uniform(2, 8), (h, w)).astype(np.float32), (0, 0), 1.0)
    image = cv2.GaussianBlur((image + grain).astype(np.float32), (0, 0), rng.uniform(0.3, 1.2))
    image = np.clip(image, 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(55, 95))])
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE) if ok else image


def render(ink: np.ndarray, rng: np.random.Generator, photo_share: float = 0.5) -> np.ndarray:
    """A canvas drawing or (with probability ``photo_share``) a paper photo of ``ink``."""
    return paper_photo(ink, rng) if rng.random() < photo_share else canvas(ink, rng)


def enlarge(image28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 dataset image (white on black, uint8) as an ink map on a larger sheet with a margin."""
    size = int(rng.integers(56, 160))
    ink = cv2.resize(image28.astype(np.float32) / 255.0, (size, size), interpolation=cv2.INTER_CUBIC)
    margin = int(rng.integers(4, size // 3 + 5))
    return cv2.copyMakeBorder(np.clip(ink, 0, 1), margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=0)
