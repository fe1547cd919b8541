"""Does an image sent to predict hold several digits? A cheap look first, a reading only when it says maybe.

``/api/v1/predict`` answers one class per image, so a number sent there comes back as one digit with a
confidence that means nothing. Its reply says when the image seems to hold several digits and points
to ``/api/v1/read``. The look costs microseconds: it measures the ink of the 28x28 input the model
already has. Only an image whose ink is wider than a single digit's (about 1 % of MNIST test digits
are wider than ``WIDE`` times their height) or that holds separate marks of full height side by side is
read to be sure; the rest pay nothing more (benchmarks/bench_predict_hint.py measures both).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from digitrec.errors import ImageTooLargeError, InvalidImageError, NoDigitFoundError

WIDE = 1.3  # ink box width / height above which a 28x28 input may hold a row of digits
TALL = 0.6  # a mark this share of the ink's height or more may be a digit of its own
INK = 40  # preview level (of 255) that counts as ink


def can_read(recognizer: Any) -> bool:
    """Whether a model reads rows of digits (digit-style models do; garments come one per image)."""
    return getattr(recognizer, "style", "digit") == "digit" and hasattr(recognizer, "read")


def may_hold_several(preview: np.ndarray) -> bool:
    """True when the 28x28 input's ink is wide, or has two tall marks side by side (a "11" written apart)."""
    mask = (preview > INK).astype(np.uint8)
    _, _, width, height = cv2.boundingRect(mask)
    if height == 0:
        return False
    if width >= WIDE * height:
        return True
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    tall = [s for s in stats[1:count] if s[cv2.CC_STAT_HEIGHT] >= TALL * height]
    if len(tall) < 2:
        return False
    spans = sorted((s[cv2.CC_STAT_LEFT], s[cv2.CC_STAT_LEFT] + s[cv2.CC_STAT_WIDTH]) for s in tall)
    return any(right <= left for (_, right), (left, _) in zip(spans, spans[1:]))


def several_digits(recognizer: Any, preview: np.ndarray, image: np.ndarray) -> bool:
    """Whether the image (``preview``: its 28x28 model input; ``image``: as decoded) holds two digits or more."""
    if not can_read(recognizer) or not may_hold_several(preview):
        return False
    try:
        reading = recognizer.read(image)
    except (InvalidImageError, ImageTooLargeError, NoDigitFoundError):
        return False
    return len(reading.digits) >= 2
