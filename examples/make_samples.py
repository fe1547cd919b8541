"""Regenerate the sample images used by the README, the docs and tests/test_docs.py.

    python examples/make_samples.py [--datasets DIR] [--out DIR]

* ``seven.png``: a 7 as the drawing page's canvas sends it (280x280, white, black round strokes 18 px
  wide), drawn here as two hand-drawn-looking strokes;
* ``four-on-paper.jpg``: an MNIST test-set 4 as a phone photo of paper would show it (grey-blue ink on
  off-white paper with grain, uneven light, a slight tilt and blur, JPEG);
* ``ankle-boot.jpg``: a Fashion-MNIST test-set ankle boot as a product photo (dark object on white;
  Fashion-MNIST's images are such photos, negated);
* ``number-on-paper.jpg``: the number 2026 written with four MNIST test-set digits in a row, as a phone
  photo of paper would show it (the same ink, grain, light, tilt and blur as the 4), for reading numbers.

The outputs are deterministic (fixed seed, fixed test-set indices). The MNIST and Fashion-MNIST test sets
come from ``--datasets``, else ``$DIGITREC_DATASETS``, else ``../shared/datasets`` beside the checkout.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from digitrec.learning.datasets import load_split

HERE = Path(__file__).resolve().parent
FOUR_INDEX = 4  # MNIST test image 4 is a 4
BOOT_INDEX = 0  # Fashion-MNIST test image 0 is an ankle boot (class 9)
NUMBER_INDICES = (1, 3, 35, 11)  # MNIST test images 1, 3, 35, 11 are a 2, a 0, a 2 and a 6


def canvas_seven() -> np.ndarray:
    """A 7 in the page's canvas style: 280x280 white, black strokes, width 18, round caps and joins."""
    canvas = np.full((280, 280), 255, np.uint8)
    top = np.array([[78, 72], [120, 70], [165, 68], [204, 71]], np.int32)
    stem = np.array([[204, 71], [188, 110], [168, 150], [150, 190], [138, 222]], np.int32)
    for stroke in (top, stem):
        cv2.polylines(canvas, [stroke], isClosed=False, color=0, thickness=18, lineType=cv2.LINE_AA)
    return canvas


def paper_photo(digit28: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A digit written on paper and photographed: ink tone, paper grain, a light gradient, tilt, blur."""
    size = 160
    ink = cv2.resize(digit28, (96, 96), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    mask = np.zeros((size, size), np.float32)
    mask[32:128, 32:128] = ink
    return photographed(mask, rng, tilt_degrees=-6.0)


def number_photo(digits28: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Digits written in a row on paper (a few pixels apart, as people write) and photographed."""
    row = np.hstack([np.pad(d, ((0, 0), (2, 2))) for d in digits28])
    ink = cv2.resize(row, (row.shape[1] * 2, 56), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    mask = np.pad(ink, ((16, 16), (16, 16)))
    return photographed(mask, rng, tilt_degrees=-3.0)


def photographed(mask: np.ndarray, rng: np.random.Generator, tilt_degrees: float) -> np.ndarray:
    """Ink (``mask``, 0..1) on off-white paper under uneven light, tilted, with grain and a little blur."""
    h, w = mask.shape
    tilt = cv2.getRotationMatrix2D((w / 2, h / 2), tilt_degrees, 1.0)
    mask = cv2.warpAffine(mask, tilt, (w, h), flags=cv2.INTER_LINEAR)
    paper = np.array([222, 232, 236], np.float32)  # BGR: slightly warm off-white
    ink_colour = np.array([90, 60, 45], np.float32)  # BGR: blue-grey ballpoint
    image = paper * (1 - mask[..., None]) + ink_colour * mask[..., None]
    grain = cv2.GaussianBlur(rng.normal(0, 6, (h, w)).astype(np.float32), (0, 0), 1.2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    light = 1.0 - 0.22 * (0.6 * xx + 0.4 * yy)  # brighter top left, shadow towards bottom right
    image = (image + grain[..., None]) * light[..., None]
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    return np.clip(image, 0, 255).astype(np.uint8)


def product_photo(garment28: np.ndarray) -> np.ndarray:
    """A Fashion-MNIST item as the product photo it came from: negated, enlarged, on white."""
    large = cv2.resize(garment28, (112, 112), interpolation=cv2.INTER_CUBIC)
    framed = cv2.copyMakeBorder(large, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=0)
    leather = np.array([70, 100, 140], np.float32)  # BGR: the darkest tone, a brown
    darkness = framed.astype(np.float32)[..., None] / 255.0  # Fashion-MNIST: bright = dark in the photo
    photo = 255.0 - darkness * (255.0 - leather)
    return np.clip(photo, 0, 255).astype(np.uint8)


def write(path: Path, image: np.ndarray, params: list[int]) -> None:
    ok, buffer = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path.name}")
    path.write_bytes(buffer.tobytes())
    print(f"{path}: {image.shape[1]}x{image.shape[0]}, {len(buffer)} bytes")


def main(argv: list[str] | None = None) -> int:
    default = os.environ.get("DIGITREC_DATASETS") or str(HERE.parent.parent / "shared" / "datasets")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=default, help=f"folder with mnist/ and fashion-mnist/ ({default})")
    parser.add_argument("--out", type=Path, default=HERE, help="where to write them (examples/)")
    args = parser.parse_args(argv)
    digits, digit_labels = load_split("mnist", "test", args.datasets)
    clothes, clothes_labels = load_split("fashion", "test", args.datasets)
    assert digit_labels[FOUR_INDEX] == 4 and clothes_labels[BOOT_INDEX] == 9
    rng = np.random.default_rng(13)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "seven.png", canvas_seven(), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    write(args.out / "four-on-paper.jpg", paper_photo(digits[FOUR_INDEX], rng), [cv2.IMWRITE_JPEG_QUALITY, 80])
    write(args.out / "ankle-boot.jpg", product_photo(clothes[BOOT_INDEX]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert "".join(str(digit_labels[i]) for i in NUMBER_INDICES) == "2026"
    number = number_photo([digits[i] for i in NUMBER_INDICES], rng)
    write(args.out / "number-on-paper.jpg", number, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
