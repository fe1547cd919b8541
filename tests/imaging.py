"""Make realistic test images from MNIST digits: paper, ink colours, canvases, photos of any size."""

from __future__ import annotations

import cv2
import numpy as np


def on_paper(
    digit28: np.ndarray,
    scale: int = 8,
    ink_bgr: tuple[int, int, int] = (20, 20, 20),
    paper_bgr: tuple[int, int, int] = (245, 245, 240),
    margin: int = 40,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Render an MNIST digit (white on black, 28x28) as ink on paper, BGR, upscaled and shifted."""
    size = 28 * scale
    ink = cv2.resize(digit28, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    ink = np.clip(ink, 0.0, 1.0)[:, :, None]
    h, w = size + 2 * margin + abs(offset[1]), size + 2 * margin + abs(offset[0])
    paper = np.empty((h, w, 3), np.float32)
    paper[:] = paper_bgr
    y0 = margin + max(0, offset[1])
    x0 = margin + max(0, offset[0])
    region = paper[y0 : y0 + size, x0 : x0 + size]
    paper[y0 : y0 + size, x0 : x0 + size] = region * (1 - ink) + np.array(ink_bgr, np.float32) * ink
    return paper.astype(np.uint8)


def canvas_stroke(digit28: np.ndarray, size: int = 280, rgb: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """A browser-canvas-like BGRA image: coloured strokes on a fully transparent background."""
    alpha = cv2.resize(digit28, (size, size), interpolation=cv2.INTER_CUBIC)
    image = np.zeros((size, size, 4), np.uint8)
    image[:, :, 0], image[:, :, 1], image[:, :, 2] = rgb[2], rgb[1], rgb[0]
    image[:, :, 3] = alpha
    return image


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


def aligned_correlation(a: np.ndarray, b: np.ndarray, shift: int = 1) -> float:
    """Best correlation over small shifts of ``b``: resampling can move a digit by a pixel."""
    best = -1.0
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            best = max(best, correlation(a, np.roll(np.roll(b, dy, axis=0), dx, axis=1)))
    return best
