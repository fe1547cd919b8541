"""Preprocessing on generated images: paper, polarity, colour ink, canvases, placement, noise, errors."""

from __future__ import annotations

import re
import struct
import zlib

import cv2
import numpy as np
import pytest
from imaging import aligned_correlation, canvas_stroke, jpeg, on_paper, png

from digitrec.errors import (
    ImageTooLargeError,
    InvalidImageError,
    NoDigitFoundError,
    UnsupportedImageTypeError,
)
from digitrec.imaging import preprocess


@pytest.fixture(scope="module")
def seven(mnist_test) -> np.ndarray:
    images, labels = mnist_test
    return images[np.flatnonzero(labels == 7)[0]]


@pytest.fixture(scope="module")
def reference(seven) -> np.ndarray:
    """What the pipeline makes of the plain black-ink-on-white rendering."""
    return preprocess.prepare(on_paper(seven)).preview


def _centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    m = cv2.moments(img.astype(np.float32))
    return m["m01"] / m["m00"], m["m10"] / m["m00"]


def test_output_contract(seven):
    prepared = preprocess.prepare(png(on_paper(seven)))
    assert prepared.tensor.shape == (1, 784) and prepared.tensor.dtype == np.float32
    assert 0.0 <= prepared.tensor.min() and prepared.tensor.max() <= 1.0
    assert prepared.preview.shape == (28, 28) and prepared.preview.dtype == np.uint8
    np.testing.assert_allclose(prepared.tensor.reshape(28, 28) * 255, prepared.preview, atol=0.5)
    # MNIST's construction: longest side 20 px, centre of mass in the centre, black background.
    ys, xs = np.nonzero(prepared.preview)
    assert max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == 20
    cy, cx = _centre_of_mass(prepared.preview)
    assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0
    assert prepared.preview[0].max() == 0 and prepared.preview[:, 0].max() == 0
    assert prepared.preview.max() == 255


def test_matches_mnist_layout(mnist_test):
    # Rendering MNIST digits on paper and preprocessing them should give back (about) the digits;
    # single digits can land a pixel off MNIST's own centring, so judge the mean.
    images, _ = mnist_test
    scores = [aligned_correlation(preprocess.prepare(on_paper(images[i])).preview, images[i]) for i in range(20)]
    assert np.mean(scores) > 0.95 and min(scores) > 0.9


@pytest.mark.parametrize(
    "ink, paper",
    [
        ((255, 255, 255), (0, 0, 0)),  # chalk on a blackboard: light on dark
        ((200, 60, 10), (250, 250, 250)),  # blue ballpoint (BGR)
        ((30, 30, 220), (240, 245, 250)),  # red pen
        ((0, 200, 230), (255, 255, 255)),  # yellow highlighter: barely darker in grey
        ((40, 40, 40), (180, 200, 210)),  # pencil on beige card
    ],
)
def test_polarity_and_ink_colour(seven, reference, ink, paper):
    prepared = preprocess.prepare(on_paper(seven, ink_bgr=ink, paper_bgr=paper))
    assert aligned_correlation(prepared.preview, reference) > 0.95


def test_polarity_detection(seven):
    assert preprocess.detect_polarity(on_paper(seven)) == "dark-on-light"
    assert preprocess.detect_polarity(on_paper(seven, ink_bgr=(255, 255, 255), paper_bgr=(0, 0, 0))) == "light-on-dark"


def test_transparent_canvas_is_white_paper(seven, reference):
    for rgb in ((0, 0, 0), (30, 90, 200)):
        canvas = canvas_stroke(seven, rgb=rgb)
        assert canvas[0, 0, 3] == 0  # fully transparent background
        prepared = preprocess.prepare(png(canvas))
        assert aligned_correlation(prepared.preview, reference) > 0.95


def test_light_strokes_on_transparent_canvas(seven, reference):
    # Light strokes on transparency (a dark-mode drawing app's export) vanish on white paper; the
    # alpha plane still holds the drawing, so it is read as light strokes on a dark canvas.
    for rgb in ((255, 255, 255), (230, 230, 160)):
        prepared = preprocess.prepare(png(canvas_stroke(seven, rgb=rgb)))
        assert aligned_correlation(prepared.preview, reference) > 0.95


def test_off_centre_digit_is_centred(seven, reference):
    img = on_paper(seven, scale=4, margin=10, offset=(600, 400))
    assert img.shape[1] > 700
    prepared = preprocess.prepare(img)
    cy, cx = _centre_of_mass(prepared.preview)
    assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0
    assert aligned_correlation(prepared.preview, reference) > 0.9


def test_huge_canvas_with_thin_stroke_keeps_the_stroke():
    canvas = np.full((4000, 3000), 255, np.uint8)
    pts = np.array([[1000, 800], [2000, 800], [1300, 3200]], np.int32)  # a big "7", 3 px pen
    cv2.polylines(canvas, [pts], isClosed=False, color=0, thickness=3)
    thick = np.full((400, 300), 255, np.uint8)
    cv2.polylines(thick, [pts // 10], isClosed=False, color=0, thickness=20)
    thin_preview = preprocess.prepare(canvas).preview
    assert (thin_preview > 128).sum() >= 30  # plain area-averaging would leave a faint smudge
    assert aligned_correlation(thin_preview, preprocess.prepare(thick).preview) > 0.85


def test_noise_is_ignored(seven, reference):
    rng = np.random.default_rng(0)
    img = on_paper(seven).astype(np.int16)
    img += rng.normal(0, 12, img.shape).astype(np.int16)
    specks = rng.integers(0, img.shape[0], (60, 2))
    for y, x in specks:  # pepper specks away from the digit
        if not (30 < y < img.shape[0] - 30 and 30 < x < img.shape[1] - 30):
            img[y, x] = 0
    prepared = preprocess.prepare(np.clip(img, 0, 255).astype(np.uint8))
    assert aligned_correlation(prepared.preview, reference) > 0.9


@pytest.mark.parametrize(
    "image",
    [
        np.full((200, 200), 255, np.uint8),
        np.full((200, 200, 3), (30, 120, 200), np.uint8),
        np.zeros((280, 280, 4), np.uint8),  # empty transparent canvas
        np.full((50, 50), 128, np.uint8) + np.random.default_rng(1).integers(0, 8, (50, 50)).astype(np.uint8),
    ],
    ids=["white", "flat-colour", "empty-canvas", "faint-texture"],
)
def test_blank_images_raise(image):
    with pytest.raises(NoDigitFoundError, match="no digit found"):
        preprocess.prepare(image)


def test_truncated_files_raise(seven):
    data = png(on_paper(seven))
    with pytest.raises(InvalidImageError, match="truncated PNG"):
        preprocess.prepare(data[: len(data) // 2])
    data = jpeg(on_paper(seven))
    with pytest.raises(InvalidImageError, match="truncated JPEG"):
        preprocess.prepare(data[: len(data) // 2])


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def test_header_bomb_is_refused_before_decoding():
    with pytest.raises(ImageTooLargeError, match="pixels"):
        preprocess.prepare(_png_header_only(100_000, 100_000))
    with pytest.raises(ImageTooLargeError, match="limit"):
        preprocess.prepare(_png_header_only(5000, 5000) + b"\x00" * 10, max_pixels=1_000_000)


def test_pixel_limit_applies_to_arrays_too():
    with pytest.raises(ImageTooLargeError):
        preprocess.prepare(np.zeros((2000, 2000), np.uint8), max_pixels=1_000_000)


@pytest.mark.parametrize(
    "data, error, message",
    [
        (b"", InvalidImageError, "empty"),
        (b"hello, I am a text file renamed to .png\n", InvalidImageError, "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, InvalidImageError, "not an image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><text>7</text></svg>", UnsupportedImageTypeError, "SVG"),
    ],
    ids=["empty", "text", "png-magic-only", "svg"],
)
def test_non_images_raise(data, error, message):
    with pytest.raises(error, match=message) as raised:
        preprocess.prepare(data)
    assert_user_terms(str(raised.value))


def assert_user_terms(message: str) -> None:
    """No library internals in a message people read: exception class names, module paths, C++ asserts."""
    assert not re.search(r"[A-Z][a-z]+[A-Z]\w*(Error|Exception)\b|cv::|\.cpp|PIL\.|<_io\.", message), message


def test_broken_files_are_described_in_user_terms(seven):
    good_png, good_jpeg = png(on_paper(seven)), jpeg(on_paper(seven))
    broken = [
        good_png[:40] + b"\x00" * 20 + good_png[-12:],  # a PNG whose data is garbage (IEND kept)
        good_jpeg[:200] + b"\xff\xd9",  # a JPEG cut short, with its end marker appended
        b"II*\x00" + b"\x00" * 60,  # a TIFF header with nothing behind it
        b"BM" + b"\x00" * 60,  # a BMP header with nothing behind it
    ]
    for data in broken:
        try:
            preprocess.prepare(data)
        except (InvalidImageError, NoDigitFoundError) as exc:
            assert_user_terms(str(exc))
        else:  # a decoder may tolerate some damage; then nothing to say
            pass


def test_missing_and_unreadable_files_are_digitrec_errors_and_still_os_errors(tmp_path):
    from digitrec.errors import DigitrecError

    missing = tmp_path / "missing.png"
    with pytest.raises(DigitrecError) as raised:
        preprocess.prepare(missing)
    assert isinstance(raised.value, FileNotFoundError)  # old `except FileNotFoundError` still works
    assert str(raised.value) == f"{missing}: no such image file"
    with pytest.raises(DigitrecError, match="folder, not an image file") as raised:
        preprocess.prepare(tmp_path)
    assert isinstance(raised.value, OSError)


def test_gif_is_unsupported(seven):
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(255 - seven).save(buf, format="GIF")
    with pytest.raises(UnsupportedImageTypeError, match="GIF"):
        preprocess.prepare(buf.getvalue())


def test_other_inputs(tmp_path, seven, reference):
    path = tmp_path / "seven.jpg"
    path.write_bytes(jpeg(on_paper(seven)))
    assert aligned_correlation(preprocess.prepare(path).preview, reference) > 0.95
    assert aligned_correlation(preprocess.prepare(str(path)).preview, reference) > 0.95
    sixteen_bit = on_paper(seven).astype(np.uint16) * 257
    assert aligned_correlation(preprocess.prepare(png(sixteen_bit)).preview, reference) > 0.95
    as_float = on_paper(seven).astype(np.float32) / 255.0
    assert aligned_correlation(preprocess.prepare(as_float).preview, reference) > 0.95
    with pytest.raises(InvalidImageError, match="shape"):
        preprocess.prepare(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(InvalidImageError, match="cannot read an image"):
        preprocess.prepare(12345)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        preprocess.prepare(tmp_path / "missing.png")


def test_seed_load_input_image(tmp_path, seven):
    path = tmp_path / "x.png"
    original = on_paper(seven)
    path.write_bytes(png(original))
    processed, loaded = preprocess.load_input_image(str(path))
    assert processed.shape == (1, 784)
    np.testing.assert_array_equal(loaded, original)


def test_garment_style_fills_the_field(fashion_test):
    images, _ = fashion_test
    shirt = images[1]
    photo = on_paper(shirt, ink_bgr=(10, 10, 10), paper_bgr=(255, 255, 255))
    preview = preprocess.prepare(photo, style="garment").preview
    ys, xs = np.nonzero(preview > 10)
    assert max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) >= 26
    assert aligned_correlation(preview, shirt) > 0.9
