"""The thumbnail of a reading record: its whole input as ink (white on black, like a digit's 28x28
preview, so no transparent canvas shows as blank), with a box around each mark it read.

Digits read are framed in green, refused marks in red, so the records page shows at a glance what the
model read where, and what it would not call a digit.
"""

from __future__ import annotations

import cv2
import numpy as np

from digitrec.records.record import Mark, PredictionRecord

THUMB_HEIGHT = 112  # pixels; the page shows it at half size for sharp lines on high-density screens
MAX_WIDTH = 640
DIGIT_COLOUR = (80, 200, 60)  # BGR
REFUSED_COLOUR = (60, 60, 235)


def reading_thumbnail(data: bytes, record: PredictionRecord, max_pixels: int) -> np.ndarray:
    """BGR image of the reading's input, scaled to ``THUMB_HEIGHT`` (at most ``MAX_WIDTH`` wide), boxes drawn."""
    from digitrec.imaging.preprocess import ink_map, load_image

    ink = ink_map(load_image(data, max_pixels))
    height, width = ink.shape[:2]
    scale = min(THUMB_HEIGHT / height, MAX_WIDTH / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(ink, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    picture = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    for marks, colour in ((record.digits, DIGIT_COLOUR), (record.refused, REFUSED_COLOUR)):
        for mark in marks:
            _frame(picture, mark, scale, colour)
    return picture


def _frame(picture: np.ndarray, mark: Mark, scale: float, colour: tuple[int, int, int]) -> None:
    x, y, w, h = mark.box
    top_left = (int(x * scale), int(y * scale))
    bottom_right = (max(top_left[0] + 1, int((x + w) * scale)), max(top_left[1] + 1, int((y + h) * scale)))
    cv2.rectangle(picture, top_left, bottom_right, colour, 2)
