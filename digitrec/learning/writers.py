"""Dataset digits redrawn the ways other writers' pens and scanners differ from the dataset's.

MNIST's digits share one pen width, one scanner resolution and one size normalisation; digits from
other writers (forms scanned at a coarse resolution, a marker, a fine pen, a slanted hand) differ in
all of these, and a refusal head that only saw MNIST's look refuses them as "not a digit". ``vary``
redraws a 28x28 dataset image with a random mix of

- slant and proportions (a horizontal shear, a narrower or wider hand);
- stroke width (the ink dilated: a marker; or eroded: a fine pen);
- resolution (the digit scaled to fill a square, binarised, averaged down to a 6-16 px grid as a
  coarse scan or a count map is, and scaled back up smoothly);
- blur.

The result is a white-on-black uint8 image with a margin, to be passed through ``preprocess.prepare``
like any other input. Nothing here reads another dataset: the variations are made from the model's
own training images.
"""

from __future__ import annotations

import cv2
import numpy as np

SCALE = 2  # the 28-px image is worked on at this multiple, so one-pixel stroke changes are fine ones


def _sheared(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = ink.shape
    shear, stretch = rng.uniform(-0.35, 0.35), rng.uniform(0.75, 1.25)
    matrix = np.float32([[stretch, shear, 0.0], [0.0, 1.0, 0.0]])
    matrix[0, 2] = w / 2 - stretch * w / 2 - shear * h / 2  # keep the centre in place
    return cv2.warpAffine(ink, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)


def _restroked(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.75:
        size = int(rng.integers(2, 7))
        return cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    thinner = cv2.erode(ink, np.ones((2, 2), np.uint8))
    strong = (ink > 0.5).sum()
    return thinner if (thinner > 0.5).sum() > 0.6 * strong else ink  # a thin stroke is not eroded away


def _coarse(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(ink > 0.1)
    if not len(ys):
        return ink
    crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    side = 32
    if rng.random() < 0.5:  # longest side to the square, proportions kept
        f = side / max(h, w)
        nh, nw = max(1, round(h * f)), max(1, round(w * f))
    else:  # height to the square, the width in proportion but at least a third of it
        nh, nw = side, max(side // 3, min(side, round(w * side / h)))
    box = np.zeros((side, side), np.float32)
    resized = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA)
    y0, x0 = (side - nh) // 2, (side - nw) // 2
    box[y0 : y0 + nh, x0 : x0 + nw] = resized
    if rng.random() < 0.7:
        box = (box > rng.uniform(0.3, 0.6)).astype(np.float32)
    grid = int(rng.integers(6, 17))
    small = cv2.resize(box, (grid, grid), interpolation=cv2.INTER_AREA)
    method = cv2.INTER_CUBIC if rng.random() < 0.6 else cv2.INTER_LINEAR
    big = np.clip(cv2.resize(small, (side * 2, side * 2), interpolation=method), 0.0, 1.0)
    return cv2.copyMakeBorder(big, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=0)


def vary(image28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 white-on-black uint8 dataset image redrawn with a random mix of the variations."""
    ink = cv2.resize(image28.astype(np.float32) / 255.0, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
    ink = cv2.copyMakeBorder(np.clip(ink, 0.0, 1.0), 12, 12, 12, 12, cv2.BORDER_CONSTANT, value=0)
    if rng.random() < 0.6:
        ink = _sheared(ink, rng)
    if rng.random() < 0.6:
        ink = _restroked(ink, rng)
    if rng.random() < 0.6:
        ink = _coarse(ink, rng)
    if rng.random() < 0.4:
        ink = cv2.GaussianBlur(ink, (0, 0), rng.uniform(0.5, 2.0))
    return np.clip(np.rint(ink * 255.0), 0, 255).astype(np.uint8)


def varied(images28: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """``vary`` of each image."""
    return [vary(image, rng) for image in images28]
