"""Numbers written in a row, built from single handwritten digits, to measure and test reading.

``compose`` lays digits (white on black, MNIST-like, at 28 px scale) side by side with a drifting
baseline, slightly varied size, and a chosen spacing:

- ``"apart"``: a clear gap of 3-8 px between neighbours' boxes;
- ``"touching"``: each digit is slid left until its ink touches its neighbour's, then 0-2 px further,
  so neighbours touch or overlap by up to 2 px.

The strip is then rendered as a person's input would arrive: ``canvas`` (dark ink on the white
280-px-high canvas of the drawing page, PNG) or ``paper_photo`` (ink on coloured paper under uneven
light, blurred, noisy, JPEG). Each ``NumberImage`` knows its text and every digit's box in its own
pixels, so benchmarks and tests can check the text and the boxes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

SPACINGS = ("apart", "touching")
RENDERS = ("canvas", "paper")
INK_LEVEL = 40  # of 255: a 28-px-scale pixel above this counts as ink when boxing and touching digits

Box = tuple[int, int, int, int]


@dataclasses.dataclass(frozen=True)
class Strip:
    """Digits composed at 28 px scale: float32 ink in [0, 1] (1 = ink), with text and digit boxes."""

    ink: np.ndarray
    text: str
    boxes: list[Box]
    owners: np.ndarray | None = None  # int8: which digit laid the ink of each pixel (-1: none)


@dataclasses.dataclass(frozen=True)
class NumberImage:
    """A rendered number: the encoded file a client would send, its text and the digits' boxes."""

    data: bytes
    text: str
    boxes: list[Box]  # x, y, width, height in the image's pixels
    size: tuple[int, int]  # width, height
    scale: float = 1.0  # image pixels per strip pixel
    offset: int = 0  # the strip's top left corner in the image: (offset, offset)

    def image(self) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_UNCHANGED)


def crop_to_ink(digit: np.ndarray) -> np.ndarray:
    """A 28-px-scale digit cropped to its ink (pixels above ``INK_LEVEL``)."""
    ys, xs = np.nonzero(digit > INK_LEVEL)
    if not len(ys):
        raise ValueError("a digit image without ink")
    return digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _touch_offset(canvas_mask: np.ndarray, digit_mask: np.ndarray, top: int, start: int) -> int:
    """The largest left edge <= ``start`` at which ``digit_mask`` touches the ink already laid."""
    h, w = digit_mask.shape
    grown = cv2.dilate(digit_mask, np.ones((3, 3), np.uint8))  # touching: 8-neighbours count
    for left in range(start, -1, -1):
        region = canvas_mask[top - 1 : top + h + 1, left - 1 : left + w + 1]
        padded = np.zeros_like(region)
        padded[1 : 1 + h, 1 : 1 + w] = grown[: region.shape[0] - 1, : region.shape[1] - 1]
        if np.any(region & padded):
            return left
    return 0


def compose(
    digits: Sequence[np.ndarray],
    labels: Sequence[int],
    spacing: str,
    rng: np.random.Generator,
    overlap: int | None = None,
) -> Strip:
    """Lay 28x28 digits (uint8, white on black) side by side at 28 px scale.

    ``overlap``: for ``"touching"``, how many pixels past first contact (0-2 drawn at random if None).
    """
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, not {spacing!r}")
    parts = []
    for digit in digits:
        part = crop_to_ink(np.asarray(digit, np.uint8))
        scale = rng.uniform(0.9, 1.1)
        size = (max(1, round(part.shape[1] * scale)), max(1, round(part.shape[0] * scale)))
        parts.append(cv2.resize(part, size, interpolation=cv2.INTER_LINEAR))
    margin = 6
    drift = rng.uniform(-1.5, 1.5)  # baseline slope: pixels per digit
    height = max(p.shape[0] for p in parts) + 2 * margin + int(abs(drift) * len(parts)) + 4
    width = sum(p.shape[1] for p in parts) + 8 * len(parts) + 2 * margin
    canvas = np.zeros((height, width), np.uint8)
    owners = np.full((height, width), -1, np.int8)
    boxes = []
    right = margin
    base = margin + 2 + (int(abs(drift) * len(parts)) if drift < 0 else 0)
    tallest = max(p.shape[0] for p in parts)
    for index, part in enumerate(parts):
        h, w = part.shape
        top = int(round(base + drift * index + (tallest - h) + rng.uniform(-1, 1)))
        top = min(max(top, 1), height - h - 1)
        if index == 0 or spacing == "apart":
            left = right + (int(rng.integers(3, 9)) if index else 0)
        else:
            contact = _touch_offset(canvas > INK_LEVEL, (part > INK_LEVEL).astype(np.uint8), top, right + 1)
            left = max(1, contact - (int(rng.integers(0, 3)) if overlap is None else overlap))
        region = canvas[top : top + h, left : left + w]
        owners[top : top + h, left : left + w][(part > INK_LEVEL) & (part >= region)] = index
        np.maximum(region, part, out=region)
        boxes.append((left, top, w, h))
        right = max(right, left + w)
    canvas, owners = canvas[:, : right + margin], owners[:, : right + margin]
    return Strip(canvas.astype(np.float32) / 255.0, "".join(str(int(v)) for v in labels), boxes, owners)


def _scaled_boxes(boxes: list[Box], scale: float, dx: int = 0, dy: int = 0) -> list[Box]:
    return [
        (int(round(x * scale)) + dx, int(round(y * scale)) + dy, int(round(w * scale)), int(round(h * scale)))
        for x, y, w, h in boxes
    ]


def canvas(strip: Strip, height: int = 280) -> NumberImage:
    """Dark ink on an opaque white canvas ``height`` px high, like the drawing page sends (PNG)."""
    scale = height / strip.ink.shape[0]
    size = (max(1, round(strip.ink.shape[1] * scale)), height)
    ink = np.clip(cv2.resize(strip.ink, size, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    image = np.clip(255.0 * (1.0 - ink), 0, 255).astype(np.uint8)
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    ok, data = cv2.imencode(".png", bgr)
    assert ok
    return NumberImage(data.tobytes(), strip.text, _scaled_boxes(strip.boxes, scale), size, scale)


def paper_photo(strip: Strip, rng: np.random.Generator) -> NumberImage:
    """Ink on paper as a phone photographs it: uneven light, blur, noise, JPEG."""
    scale = float(rng.uniform(3.0, 8.0))
    margin = int(rng.integers(10, 60))
    size = (round(strip.ink.shape[1] * scale), round(strip.ink.shape[0] * scale))
    ink = np.clip(cv2.resize(strip.ink, size, interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    ink = cv2.copyMakeBorder(ink, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=0.0)
    h, w = ink.shape
    paper = np.array(rng.uniform([200, 205, 205], [245, 250, 250]), np.float32)
    pen = np.array(rng.choice([[30, 25, 20], [120, 40, 20], [40, 40, 160], [60, 60, 60]]), np.float32)
    pen += rng.uniform(-15, 15, 3)
    image = paper[None, None, :] * (1.0 - ink[..., None]) + pen[None, None, :] * ink[..., None]
    # Uneven light: a linear fall-off in a random direction and a soft bright spot.
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx / w - 0.5) * np.cos(angle) + (yy / h - 0.5) * np.sin(angle)) * rng.uniform(0.15, 0.35)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    spot = 0.1 * np.exp(-(((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2) * 4)
    image *= (1.0 - ramp + spot)[..., None]
    sigma = float(rng.uniform(0.4, 1.2)) * scale / 4.0
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += rng.normal(0, rng.uniform(2, 7), image.shape).astype(np.float32)
    bgr = np.clip(image, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 91))])
    assert ok
    boxes = _scaled_boxes(strip.boxes, scale, margin, margin)
    return NumberImage(data.tobytes(), strip.text, boxes, (w, h), scale, margin)


def numbers(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    length: int | tuple[int, int],
    spacing: str,
    render: str,
    seed: int = 0,
) -> Iterator[NumberImage]:
    """``count`` numbers of ``length`` digits (or a random length in the inclusive range) drawn
    from ``images``/``labels`` (28x28 uint8 white on black), rendered as ``"canvas"`` or ``"paper"``."""
    if render not in RENDERS:
        raise ValueError(f"render must be one of {RENDERS}, not {render!r}")
    rng = np.random.default_rng(seed)
    for _ in range(count):
        k = length if isinstance(length, int) else int(rng.integers(length[0], length[1] + 1))
        chosen = rng.choice(len(images), size=k, replace=False)
        strip = compose([images[i] for i in chosen], [int(labels[i]) for i in chosen], spacing, rng)
        yield canvas(strip) if render == "canvas" else paper_photo(strip, rng)
