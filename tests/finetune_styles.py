"""Handwriting styles the shipped digits model misreads, made from MNIST digits, as PNG uploads.

Each style redraws an MNIST digit the way a different hand or pen would: the digit is upscaled 4x
(112 px), its ink thresholded, transformed, and written as dark ink on white paper (a 152x152 PNG), so
it goes through the service's whole preprocessing like any upload. Misread rates of the shipped model
(2026-11-21), measured with ``python benchmarks/bench_finetune_styles.py`` on MNIST test digits, are in
BENCHMARKS.md ("Fine-tuning styles"); each style is misread at least 40 % of the time, while the plain
test set is misread 0.35 % of the time. A person reads all of them.

- ``dotted``: the pen lifts constantly: the stroke's centre line drawn as separate round dots.
- ``bubbly``: bubble letters: the outline of a thick stroke, hollow inside.
- ``continental``: ones with a long upstroke (flag) and sevens with a bar, as written in much of
  Europe; its pictures are ones and sevens only (the other digits are written as in MNIST). Without the
  bar, the flagged one looks like a narrow seven to a model that learnt American handwriting.
- ``marker``: a very thick round felt pen (27 px on the 112 px drawing, 6-7 px at the model's 28 px).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np

SCALE = 4
SIZE = 28 * SCALE
MARGIN = 20


def drawn_ink(digit28: np.ndarray) -> np.ndarray:
    """The MNIST digit as binary ink (0/255) on a 112x112 drawing: the skeleton every style redraws."""
    big = cv2.resize(digit28, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    return ((big > 100) * 255).astype(np.uint8)


def as_png(ink: np.ndarray) -> bytes:
    """Ink (255) on black -> dark ink on white paper with a margin, PNG bytes."""
    paper = cv2.copyMakeBorder(255 - ink, MARGIN, MARGIN, MARGIN, MARGIN, cv2.BORDER_CONSTANT, value=255)
    ok, buffer = cv2.imencode(".png", paper)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def round_pen(diameter: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (diameter, diameter))


def centre_line(ink: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel centre line (0/1) of a binary stroke image."""
    x = np.pad((ink > 0).astype(np.uint8), 1)
    while True:
        changed = False
        for first in (True, False):
            p2, p3, p4 = x[:-2, 1:-1], x[:-2, 2:], x[1:-1, 2:]
            p5, p6, p7 = x[2:, 2:], x[2:, 1:-1], x[2:, :-2]
            p8, p9 = x[1:-1, :-2], x[:-2, :-2]
            ring = [p2, p3, p4, p5, p6, p7, p8, p9, p2]
            neighbours = sum(n.astype(np.int32) for n in ring[:8])
            transitions = sum(((a == 0) & (b == 1)).astype(np.int32) for a, b in zip(ring, ring[1:]))
            if first:
                side = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                side = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (x[1:-1, 1:-1] == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                x[1:-1, 1:-1][remove] = 0
                changed = True
        if not changed:
            return x[1:-1, 1:-1]


def dotted(digit28: np.ndarray, label: int, spacing: int = 14, radius: int = 4) -> np.ndarray:
    """Round dots along the centre line, at least ``spacing`` px apart (about 3.5 px at 28 px)."""
    line = centre_line(drawn_ink(digit28))
    out = np.zeros((SIZE, SIZE), np.uint8)
    placed = np.zeros((0, 2))
    for y, x in zip(*np.nonzero(line)):
        if len(placed) and (((placed - (y, x)) ** 2).sum(axis=1) < spacing**2).any():
            continue
        placed = np.vstack([placed, (y, x)])
        cv2.circle(out, (int(x), int(y)), radius, 255, -1)
    return out


def bubbly(digit28: np.ndarray, label: int, pen: int = 19, wall: int = 5) -> np.ndarray:
    """The outline (``wall`` px) of the digit drawn with a ``pen`` px round pen: hollow bubble strokes."""
    thick = cv2.dilate(drawn_ink(digit28), round_pen(pen))
    return cv2.subtract(thick, cv2.erode(thick, round_pen(2 * wall + 1)))


def continental(digit28: np.ndarray, label: int, flag: float = 0.5, flag_deg: float = 35.0) -> np.ndarray:
    """A one gets a flag (an upstroke from its top, ``flag`` of its height long, ``flag_deg`` below the
    horizontal); a seven gets a bar across its stem a little below the middle; other digits are unchanged."""
    ink = drawn_ink(digit28)
    ys, xs = np.nonzero(ink)
    if not len(ys) or label not in (1, 7):
        return ink
    pen = max(6, int(round(2 * cv2.distanceTransform(ink, cv2.DIST_L2, 3).max())))
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    height = bottom - top
    if label == 1:
        x0 = int(xs[ys == top].mean())
        angle = np.radians(flag_deg)
        end = (int(x0 - flag * height * np.cos(angle)), int(top + flag * height * np.sin(angle)))
        cv2.line(ink, (x0, int(top)), end, 255, pen)
    else:
        y = int(top + 0.55 * height)
        row = np.nonzero(ink[y])[0]
        centre = int(row.mean()) if len(row) else (left + right) // 2
        half = int(0.22 * max(height, right - left))
        cv2.line(ink, (centre - half, y), (centre + half, y), 255, pen)
    return ink


def marker(digit28: np.ndarray, label: int, pen: int = 27) -> np.ndarray:
    """The digit redrawn with a very thick round pen."""
    return cv2.dilate(drawn_ink(digit28), round_pen(pen))


@dataclasses.dataclass(frozen=True)
class Style:
    name: str
    draw: Callable[[np.ndarray, int], np.ndarray]  # (MNIST digit 28x28, its label) -> ink on 112x112
    digits: tuple[int, ...] = tuple(range(10))  # the digits this hand writes differently

    def png(self, digit28: np.ndarray, label: int) -> bytes:
        return as_png(self.draw(digit28, int(label)))

    def pick(self, labels: np.ndarray, count: int, rng: np.random.Generator, exclude: np.ndarray | None = None):
        """``count`` distinct indices of digits this style applies to, drawn with ``rng``."""
        allowed = np.flatnonzero(np.isin(labels, self.digits))
        if exclude is not None:
            allowed = np.setdiff1d(allowed, exclude)
        if count > len(allowed):
            raise ValueError(f"style {self.name!r}: {count} digits asked, {len(allowed)} available")
        return rng.choice(allowed, count, replace=False)


STYLES: dict[str, Style] = {
    "dotted": Style("dotted", dotted),
    "bubbly": Style("bubbly", bubbly),
    "continental": Style("continental", continental, digits=(1, 7)),
    "marker": Style("marker", marker),
}
