"""Does an image sent to predict hold several digits? A cheap look first, a reading only when it says maybe.

``/api/v1/predict`` answers one class per image, so a number sent there comes back as one digit with a
confidence that means nothing. Its reply says when the image seems to hold several digits and points
to ``/api/v1/read``. The look costs microseconds: it measures the ink of the 28x28 input the model
already has. Only an image whose ink is wider than a single digit's (5 of the first 2,000 MNIST test
digits are ``WIDE`` times as wide as tall; two digits side by side, touching or not, always were) or
that holds separate marks of full height side by side (no single MNIST digit does) is read to be sure;
the rest pay nothing more. benchmarks/bench_predict_hint.py measures what predict pays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from digitrec.errors import ImageTooLargeError, InvalidImageError, NoDigitFoundError

WIDE = 1.6  # ink box width / height from which a 28x28 input may hold a row of digits
TALL = 0.6  # a mark this share of the ink's height or more may be a digit of its own
INK = 40  # preview level (of 255) that counts as ink


def can_read(recognizer: Any) -> bool:
    """Whether a model reads rows of digits (digit-style models do; garments come one per image)."""
    return getattr(recognizer, "style", "digit") == "digit" and hasattr(recognizer, "read")


def may_hold_several(preview: np.ndarray) -> bool:
    """True when the 28x28 input's ink is wide, or falls into two tall marks with clear columns between
    them (a "11" written apart).

    Runs once per predicted image, right after the model call, when little of it is in the CPU's caches:
    three array operations, then byte-string searches on the 28 columns and rows, and more only for
    ink with a gap in its columns."""
    ink = preview > INK
    columns = ink.any(axis=0).tobytes()
    rows = ink.any(axis=1).tobytes()
    left, right = columns.find(1), columns.rfind(1)
    if left < 0:
        return False
    height = rows.rfind(1) - rows.find(1) + 1
    if right - left + 1 >= WIDE * height:
        return True
    if b"\x00" not in columns[left : right + 1]:
        return False  # one run of columns: one mark wide, or marks stacked above each other
    tall = 0
    start = left
    while start <= right:
        end = columns.find(0, start, right + 1)
        end = right + 1 if end < 0 else end
        marked = ink[:, start:end].any(axis=1).tobytes()
        tall += marked.rfind(1) - marked.find(1) + 1 >= TALL * height
        following = columns.find(1, end, right + 1)
        start = right + 1 if following < 0 else following
    return tall >= 2


def several_digits(recognizer: Any, preview: np.ndarray, image: np.ndarray) -> bool:
    """Whether the image (``preview``: its 28x28 model input; ``image``: as decoded) holds two digits or more."""
    if not can_read(recognizer) or not may_hold_several(preview):
        return False
    try:
        reading = recognizer.read(image)
    except (InvalidImageError, ImageTooLargeError, NoDigitFoundError):
        return False
    return len(reading.digits) >= 2
