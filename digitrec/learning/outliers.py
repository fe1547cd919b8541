"""Synthetic marks that are none of the models' classes: letters, words, scribbles, shapes, textures.

They teach the refusal head what is *not* a digit (or a garment), and a disjoint set of them measures
it. Every family has kinds reserved for the ``"train"`` split and kinds reserved for the ``"test"``
split (other fonts, other shape and texture kinds, other scribble generators), so the benchmark
measures marks of kinds the head never saw, not just new samples of the same kinds.

Letters that are digits in disguise are left out of both splits, because no reader could refuse them
without also refusing real digits: O o Q D (0), I l i j J (1), Z z (2), S s (5), b G (6), B (8),
g q (9). Outlined circles and ellipses (a 0) and single straight strokes (a 1) are left out for the
same reason.

``ink(family, rng, split)`` returns an ink map: float32 (H, W) in [0, 1], 1.0 where the ink is;
``digitrec.learning.rendering`` turns it into a canvas drawing or a paper photo.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

SPLITS = ("train", "test")
FAMILIES = ("letters", "words", "scribbles", "shapes", "textures", "symbols")

LETTERS = "ACEFHKMNPRTUVWXYacdefhkmnprtuvwxy"
SYMBOLS = "#%@*=<>{}[]~^"
AMBIGUOUS = {
    "letters": "O o Q D (0), I l i j J (1), Z z (2), S s (5), b G (6), B (8), g q (9)",
    "symbols": "/ \\ | ! ( ) (1), $ (5), & (8), ? (2 or 7), + - . , (too little ink to be anything)",
    "shapes": "outlined circles and ellipses (0)",
    "strokes": "single straight strokes (1)",
}

FONTS = {
    "train": (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX),
    "test": (
        cv2.FONT_HERSHEY_PLAIN,
        cv2.FONT_HERSHEY_COMPLEX,
        cv2.FONT_HERSHEY_TRIPLEX,
        cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
    ),
}
SHAPES = {
    "train": (
        "rectangle",
        "triangle",
        "ellipse_filled",
        "polygon_filled",
        "cloud",
        "pin",
        "crescent",
        "spiral",
        "random_polygon",
        "composite",
    ),
    "test": ("star", "cross", "disc", "heart", "arrow"),
}
SCRIBBLES = {"train": ("spline", "tangle", "loops", "fill", "lissajous"), "test": ("random_walk", "zigzag", "hatching")}
LISSAJOUS = [(a, b) for a in range(3, 8) for b in range(3, 8) if a != b and 2 * a != b and 2 * b != a]
TEXTURES = {"train": ("uniform_noise", "blobs", "stripes"), "test": ("checkerboard", "speckle", "grating")}

Ink = np.ndarray  # uint8 0..255 while drawing (OpenCV draws text on 8-bit images), float32 0..1 out


def kinds(split: str) -> dict[str, list[str]]:
    """The kinds of every family reserved for ``split`` (for model.json and the benchmark)."""
    _check_split(split)
    fonts = {getattr(cv2, n): n.removeprefix("FONT_HERSHEY_").lower() for n in dir(cv2) if n.startswith("FONT_HERS")}
    return {
        "fonts (letters, words, symbols)": [fonts[f] for f in FONTS[split]],
        "scribbles": list(SCRIBBLES[split]),
        "shapes": list(SHAPES[split]),
        "textures": list(TEXTURES[split]),
    }


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")


def _sheet(rng: np.random.Generator, low: int = 64, high: int = 160) -> tuple[Ink, int]:
    size = int(rng.integers(low, high))
    return np.zeros((size, size), np.uint8), size


def _thickness(size: int, rng: np.random.Generator) -> int:
    return max(1, int(round(size * rng.uniform(0.03, 0.12))))


def _slant(ink: Ink, rng: np.random.Generator, max_shear: float = 0.35, max_deg: float = 15.0) -> Ink:
    """A little shear and rotation, as handwriting has."""
    h, w = ink.shape
    shear = rng.uniform(-max_shear, max_shear)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-max_deg, max_deg), 1.0)
    m[0, 1] += shear
    m[0, 2] -= shear * h / 2
    return cv2.warpAffine(ink, m, (w, h), flags=cv2.INTER_LINEAR)


def _text(text: str, rng: np.random.Generator, split: str) -> Ink:
    font = FONTS[split][int(rng.integers(len(FONTS[split])))]
    if rng.random() < 0.3:
        font |= cv2.FONT_ITALIC
    scale = rng.uniform(1.2, 3.0)
    thickness = int(rng.integers(1, max(2, int(scale * 3))))
    (w, h), base = cv2.getTextSize(text, font, scale, thickness)
    pad = int(max(w, h) * 0.3) + thickness + 4
    ink = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
    cv2.putText(ink, text, (pad, pad + h), font, scale, 255, thickness, cv2.LINE_AA)
    return _slant(ink, rng)


def letters(rng: np.random.Generator, split: str) -> Ink:
    return _text(LETTERS[int(rng.integers(len(LETTERS)))], rng, split)


def symbols(rng: np.random.Generator, split: str) -> Ink:
    return _text(SYMBOLS[int(rng.integers(len(SYMBOLS)))], rng, split)


def words(rng: np.random.Generator, split: str) -> Ink:
    count = int(rng.integers(2, 6))
    return _text("".join(LETTERS[int(i)] for i in rng.integers(len(LETTERS), size=count)), rng, split)


def _curve(points: np.ndarray, steps: int = 16) -> np.ndarray:
    """A Catmull-Rom spline through ``points`` (k, 2)."""
    p = np.concatenate([points[:1], points, points[-1:]])
    out = []
    for i in range(1, len(p) - 2):
        t = np.linspace(0, 1, steps, endpoint=False)[:, None]
        a, b, c, d = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * b + (-a + c) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (-a + 3 * b - 3 * c + d) * t**3))
    out.append(p[-2:-1])
    return np.concatenate(out)


def _polyline(ink: Ink, points: np.ndarray, thickness: int) -> None:
    cv2.polylines(ink, [np.round(points).astype(np.int32)], False, 255, thickness, cv2.LINE_AA)


def scribbles(rng: np.random.Generator, split: str) -> Ink:
    kind = SCRIBBLES[split][int(rng.integers(len(SCRIBBLES[split])))]
    ink, size = _sheet(rng)
    t = _thickness(size, rng)
    lo, hi = 0.1 * size, 0.9 * size
    if kind == "spline":  # a smooth curve through many random points
        _polyline(ink, _curve(rng.uniform(lo, hi, (int(rng.integers(6, 12)), 2))), t)
    elif kind == "tangle":  # several short curves crossing
        for _ in range(int(rng.integers(3, 7))):
            _polyline(ink, _curve(rng.uniform(lo, hi, (int(rng.integers(3, 5)), 2))), t)
    elif kind == "loops":  # a cursive row of loops, like "eeee" or "llll"
        n, s = int(rng.integers(3, 7)), np.linspace(0, 1, 200)
        a = s * n * 2 * np.pi
        x = lo + s * (hi - lo) - rng.uniform(0.05, 0.12) * size * np.sin(a)
        y = size / 2 + rng.uniform(0.1, 0.3) * size * np.cos(a) * rng.choice([-1, 1])
        _polyline(ink, np.stack([x, y], 1), max(1, t // 2))
    elif kind == "fill":  # the back-and-forth scribble that fills or crosses out an area
        n = int(rng.integers(6, 16))
        y = np.linspace(lo, hi, n) + rng.normal(0, 0.02 * size, n)
        x = np.where(np.arange(n) % 2 == 0, lo, hi) + rng.normal(0, 0.08 * size, n)
        _polyline(ink, _curve(np.stack([x, y], 1), 6), t)
    elif kind == "lissajous":  # a closed knot of two sines (frequencies 3-7, never 1:1 or 1:2: an 0 or an 8)
        s = np.linspace(0, 2 * np.pi, 400)
        a, b = LISSAJOUS[int(rng.integers(len(LISSAJOUS)))]
        x = size / 2 + (hi - lo) / 2 * np.sin(a * s + rng.uniform(0, np.pi))
        y = size / 2 + (hi - lo) / 2 * np.sin(b * s) * rng.uniform(0.4, 1.0)
        _polyline(ink, np.stack([x, y], 1), max(1, t // 2))
    elif kind == "random_walk":  # a jittery path with momentum
        steps = int(rng.integers(40, 120))
        heading = np.cumsum(rng.normal(0, 0.5, steps))
        path = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1) * size * 0.04, axis=0)
        path = path - path.min(0)
        path = lo + path / max(float(path.max()), 1e-6) * (hi - lo)
        _polyline(ink, path, t)
    elif kind == "zigzag":  # many sharp turns (more than a Z, a W or an M has)
        n = int(rng.integers(7, 14))
        x = np.linspace(lo, hi, n)
        y = np.where(np.arange(n) % 2 == 0, lo, hi) + rng.normal(0, 0.05 * size, n)
        pts = np.stack([x, y], 1)
        if rng.random() < 0.5:
            pts = pts[:, ::-1]
        _polyline(ink, pts, t)
    else:  # hatching: parallel strokes, crossed or not
        angle = rng.uniform(0, np.pi)
        for a in (angle, angle + np.pi / 2) if rng.random() < 0.5 else (angle,):
            d = np.array([np.cos(a), np.sin(a)]) * size * 0.35
            n = np.array([-np.sin(a), np.cos(a)])
            for offset in np.linspace(-0.35, 0.35, int(rng.integers(4, 8))) * size:
                c = size / 2 + n * offset
                _polyline(ink, np.stack([c - d, c + d]), max(1, t // 2))
    return _slant(ink, rng, 0.2, 30.0)


def _regular(cx: float, cy: float, r: float, sides: int, phase: float) -> np.ndarray:
    a = phase + np.arange(sides) * 2 * np.pi / sides
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def shapes(rng: np.random.Generator, split: str) -> Ink:
    kind = SHAPES[split][int(rng.integers(len(SHAPES[split])))]
    ink, size = _sheet(rng)
    c, r = size / 2, size * rng.uniform(0.25, 0.42)
    t = _thickness(size, rng)
    filled = rng.random() < 0.5
    pts: np.ndarray | None = None
    if kind == "rectangle":
        w, h = r * rng.uniform(0.5, 1.0), r * rng.uniform(0.5, 1.0)
        pts = np.array([[c - w, c - h], [c + w, c - h], [c + w, c + h], [c - w, c + h]])
    elif kind == "triangle":
        pts = _regular(c, c, r, 3, rng.uniform(0, 2 * np.pi)) + rng.normal(0, 0.08 * r, (3, 2))
    elif kind == "ellipse_filled":
        axes = (int(r), int(r * rng.uniform(0.4, 1.0)))
        cv2.ellipse(ink, (int(c), int(c)), axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
    elif kind == "polygon_filled":
        pts, filled = _regular(c, c, r, int(rng.integers(5, 9)), rng.uniform(0, 2 * np.pi)), True
    elif kind == "cloud":  # a bumpy closed outline
        a = np.linspace(0, 2 * np.pi, 120, endpoint=False)
        bumps = int(rng.integers(5, 10))
        rad = r * (0.75 + 0.25 * np.abs(np.sin(a * bumps / 2 + rng.uniform(0, 3))))
        pts = np.stack([c + rad * np.cos(a), c + rad * np.sin(a) * rng.uniform(0.6, 1.0)], 1)
    elif kind == "pin":  # a stroke with a blob or box at its end
        a = rng.uniform(0, 2 * np.pi)
        d = np.array([np.cos(a), np.sin(a)]) * r
        cv2.line(ink, tuple(np.int32(c - d)), tuple(np.int32(c + d * 0.5)), 255, t, cv2.LINE_AA)
        end, k = c + d * 0.7, int(r * rng.uniform(0.25, 0.4))
        if rng.random() < 0.5:
            cv2.circle(ink, tuple(np.int32(end)), k, 255, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(ink, tuple(np.int32(end - k)), tuple(np.int32(end + k)), 255, -1 if filled else t)
    elif kind == "crescent":
        cv2.circle(ink, (int(c), int(c)), int(r), 255, -1, cv2.LINE_AA)
        off = np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)]) * r * rng.uniform(0.3, 0.6)
        cv2.circle(ink, tuple(np.int32(c + off)), int(r * 0.9), 0, -1, cv2.LINE_AA)
    elif kind == "spiral":
        s = np.linspace(0, rng.uniform(2.5, 5) * 2 * np.pi, 300)
        rad = r * s / s[-1]
        _polyline(ink, np.stack([c + rad * np.cos(s), c + rad * np.sin(s)], 1), max(1, t // 2))
    elif kind == "random_polygon":  # 5-12 corners at random radii: spiky, dented, lopsided
        k = int(rng.integers(5, 13))
        a = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = r * rng.uniform(0.3, 1.0, k)
        pts = np.stack([c + rad * np.cos(a), c + rad * np.sin(a)], 1)
    elif kind == "composite":  # 2-4 overlapping primitives: bars, boxes, blobs, wedges
        for _ in range(int(rng.integers(2, 5))):
            p, q = rng.uniform(0.15 * size, 0.85 * size, (2, 2))
            choice = int(rng.integers(4))
            if choice == 0:
                cv2.line(ink, tuple(np.int32(p)), tuple(np.int32(q)), 255, t, cv2.LINE_AA)
            elif choice == 1:
                cv2.rectangle(ink, tuple(np.int32(np.minimum(p, q))), tuple(np.int32(np.maximum(p, q))), 255,
                              -1 if rng.random() < 0.5 else t)  # fmt: skip
            elif choice == 2:
                cv2.circle(ink, tuple(np.int32(p)), int(rng.uniform(0.05, 0.2) * size), 255, -1, cv2.LINE_AA)
            else:
                wedge = np.stack([p, q, p + rng.normal(0, 0.2 * size, 2)])
                cv2.fillPoly(ink, [np.round(wedge).astype(np.int32)], 255, cv2.LINE_AA)
    elif kind == "star":
        k, phase = int(rng.integers(5, 8)), rng.uniform(0, 2 * np.pi)
        outer = _regular(c, c, r, k, phase)
        inner = _regular(c, c, r * rng.uniform(0.35, 0.55), k, phase + np.pi / k)
        pts = np.stack([outer, inner], 1).reshape(-1, 2)
    elif kind == "cross":
        arm = r * rng.uniform(0.15, 0.3)
        pts = np.array(
            [[-arm, -r], [arm, -r], [arm, -arm], [r, -arm], [r, arm], [arm, arm], [arm, r], [-arm, r],
             [-arm, arm], [-r, arm], [-r, -arm], [-arm, -arm]]
        )  # fmt: skip
        a = rng.uniform(0, np.pi / 2)
        pts = pts @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + c
    elif kind == "disc":
        cv2.circle(ink, (int(c), int(c)), int(r), 255, -1, cv2.LINE_AA)
    elif kind == "heart":
        s = np.linspace(0, 2 * np.pi, 60)
        x, y = 16 * np.sin(s) ** 3, -(13 * np.cos(s) - 5 * np.cos(2 * s) - 2 * np.cos(3 * s) - np.cos(4 * s))
        pts = np.stack([x, y], 1) * r / 17 + c
    else:  # arrow
        a = rng.uniform(0, 2 * np.pi)
        d, n = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        tip = c + d * r
        cv2.line(ink, tuple(np.int32(c - d * r)), tuple(np.int32(tip)), 255, t, cv2.LINE_AA)
        head = np.stack([tip, tip - d * r * 0.45 + n * r * 0.35, tip - d * r * 0.45 - n * r * 0.35])
        pts, filled = head, rng.random() < 0.7
    if pts is not None:
        poly = [np.round(pts).astype(np.int32)]
        if filled:
            cv2.fillPoly(ink, poly, 255, cv2.LINE_AA)
        else:
            cv2.polylines(ink, poly, True, 255, t, cv2.LINE_AA)
    return _slant(ink, rng, 0.2, 30.0)


def textures(rng: np.random.Generator, split: str) -> Ink:
    kind = TEXTURES[split][int(rng.integers(len(TEXTURES[split])))]
    ink: Ink
    size = int(rng.integers(40, 140))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "uniform_noise":
        ink = rng.random((size, size), dtype=np.float32)
    elif kind == "blobs":
        noise = cv2.GaussianBlur(rng.random((size, size), dtype=np.float32), (0, 0), rng.uniform(2, 8))
        ink = (noise > np.quantile(noise, rng.uniform(0.4, 0.8))).astype(np.float32)
    elif kind == "stripes":
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 20)
        ink = ((np.cos(a) * xx + np.sin(a) * yy) % period < period / 2).astype(np.float32)
    elif kind == "checkerboard":
        cell = rng.uniform(4, 20)
        ink = _slant(((xx // cell + yy // cell) % 2).astype(np.float32), rng, 0.1, 45.0)
    elif kind == "speckle":
        ink = (rng.random((size, size)) < rng.uniform(0.05, 0.4)).astype(np.float32)
        ink = cv2.GaussianBlur(ink, (0, 0), rng.uniform(0.3, 1.5))
    else:  # grating: two crossed sinusoids with noise, like woven cloth or wood grain
        f1, f2 = rng.uniform(0.1, 0.6, 2)
        ink = 0.5 + 0.25 * np.sin(f1 * xx + rng.uniform(0, 6)) + 0.25 * np.sin(f2 * yy + 3 * np.sin(0.05 * xx))
        ink = ink + rng.normal(0, 0.1, ink.shape)
    return np.clip(ink, 0.0, 1.0).astype(np.float32)


GENERATORS: dict[str, Callable[[np.random.Generator, str], Ink]] = {
    "letters": letters,
    "words": words,
    "scribbles": scribbles,
    "shapes": shapes,
    "textures": textures,
    "symbols": symbols,
}


def ink(family: str, rng: np.random.Generator, split: str = "train") -> Ink:
    """One ink map of ``family`` from the kinds reserved for ``split``."""
    _check_split(split)
    if family not in GENERATORS:
        raise ValueError(f"family must be one of {FAMILIES}, not {family!r}")
    out = GENERATORS[family](rng, split)
    return out.astype(np.float32) / 255.0 if out.dtype == np.uint8 else out.astype(np.float32)
