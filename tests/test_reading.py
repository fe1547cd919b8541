"""Reading a row of digits: segmentation cases, ``DigitRecognizer.read`` and its boxes.

Whole-number accuracy over many generated numbers is a figure (benchmarks/bench_reading.py); these
tests pin down each segmentation case on a few fixed images.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from digitrec.imaging.segment import segment
from digitrec.learning import numbers
from digitrec.model.reading import Reading


def _page(width: int = 400, height: int = 200) -> np.ndarray:
    return np.full((height, width), 255, np.uint8)


def _pen(image: np.ndarray, points: list[tuple[int, int]], thickness: int = 9) -> None:
    cv2.polylines(image, [np.array(points, np.int32)], False, 0, thickness, cv2.LINE_AA)


def _one(image: np.ndarray) -> None:
    """A "1" to the right of the digit under test, so each image is a two-digit number."""
    _pen(image, [(250, 40), (250, 170)])


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / (aw * ah + bw * bh - ix * iy)


def _contains(box: tuple[int, int, int, int], x: int, y: int) -> bool:
    return box[0] <= x < box[0] + box[2] and box[1] <= y < box[1] + box[3]


def test_strokes_of_one_digit_that_do_not_touch_are_merged(digits_model):
    four = _page()  # a 4 in two strokes: the crossbar stops short of the upright
    _pen(four, [(90, 40), (50, 120), (112, 120)])
    _pen(four, [(125, 40), (125, 170)])
    five = _page()  # a 5 whose flag does not touch the body
    _pen(five, [(70, 50), (65, 100), (95, 92), (120, 110), (122, 140), (100, 165), (65, 160)])
    _pen(five, [(82, 38), (135, 38)])
    zero = _page()  # a 0 broken at the top and the bottom by a light pen
    cv2.ellipse(zero, (110, 105), (45, 62), 0, 100, 255, 0, 9, cv2.LINE_AA)
    cv2.ellipse(zero, (110, 105), (45, 62), 0, 285, 440, 0, 9, cv2.LINE_AA)
    for image, text, (stroke_a, stroke_b) in (
        (four, "41", ((50, 120), (125, 168))),
        (five, "51", ((65, 100), (135, 38))),
        (zero, "01", ((66, 105), (154, 105))),
    ):
        for mark in (four, five, zero):
            assert mark is image or not np.array_equal(mark, image)
        _one(image)
        assert len(segment(image).candidates) >= 2  # the strokes are separate blobs
        reading = digits_model.read(image)
        assert reading.text == text
        box = reading.digits[0].box
        assert _contains(box, *stroke_a) and _contains(box, *stroke_b), (text, box)


def _touching(images, labels, first: int, overlap: int) -> numbers.NumberImage:
    pair = [images[first], images[first + 1]]
    strip = numbers.compose(pair, labels[first : first + 2], "touching", np.random.default_rng(first), overlap=overlap)
    return numbers.canvas(strip)


def _ink_touches(number: numbers.NumberImage) -> bool:
    """Whether one blob of ink (at the level the reader counts as ink) spans both digits' centres."""
    ink = (number.image()[..., 0] < 215).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    x, _, w, _, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    return all(x <= bx + bw // 2 < x + w for bx, _, bw, _ in number.boxes)


@pytest.mark.parametrize("first", [0, 6, 18, 24])
def test_touching_neighbours_are_split(digits_model, mnist_test, first):
    images, labels = mnist_test
    number = _touching(images, labels, first, overlap=0)
    assert _ink_touches(number)  # one blob of ink: only a cut can separate the digits
    reading = digits_model.read(number.data)
    assert reading.text == number.text
    assert len(reading.digits) == 2


@pytest.mark.parametrize("first", [0, 6, 8, 16])
def test_overlapping_neighbours_are_split(digits_model, mnist_test, first):
    images, labels = mnist_test
    number = _touching(images, labels, first, overlap=2)
    assert _ink_touches(number)
    reading = digits_model.read(number.data)
    # split into the two digits; a cut-off piece of an odd digit (test image 8, a 5) may be refused as not
    # quite a digit, which is the refusal's call, not the split's
    marks = sorted(reading.digits + reading.refused, key=lambda mark: mark.box[0])
    assert "".join(mark.name for mark in marks) == number.text
    left, right = (mark.box for mark in marks)
    assert left[0] + left[2] > right[0]  # the boxes overlap: the cut was not a straight gap


def _apart(images, labels, seed: int = 5, length: int = 4) -> numbers.NumberImage:
    return next(numbers.numbers(images, labels, 1, length, "apart", "canvas", seed=seed))


def test_slant_and_baseline_drift_are_fine(digits_model, mnist_test):
    images, labels = mnist_test
    number = _apart(images, labels)
    image = cv2.cvtColor(number.image(), cv2.COLOR_BGR2GRAY)
    h, w = image.shape
    for shear, drift in ((0.3, 0.0), (-0.2, 0.15)):
        # shear: slant in columns per row; drift: the baseline climbs this many rows per column
        matrix = np.float32([[1, -shear, shear * h / 2 + h * 0.3], [-drift, 1, drift * w / 2 + h * 0.2]])
        warped = cv2.warpAffine(image, matrix, (w + h, int(h * 1.4) + int(abs(drift) * w)), borderValue=255)
        assert digits_model.read(warped).text == number.text, (shear, drift)


def test_dots_specks_and_underlines_are_ignored(digits_model, mnist_test):
    images, labels = mnist_test
    number = _apart(images, labels)
    clean = cv2.cvtColor(number.image(), cv2.COLOR_BGR2GRAY)
    assert digits_model.read(clean).text == number.text
    bottom = max(y + h for _, y, _, h in number.boxes)
    right = max(x + w for x, _, w, _ in number.boxes)
    left = min(x for x, _, _, _ in number.boxes)
    (x0, _, w0, _), (x1, _, _, _) = number.boxes[1], number.boxes[2]
    dotted = clean.copy()
    cv2.circle(dotted, ((x0 + w0 + x1) // 2, bottom - 6), 6, 0, -1)  # a decimal point
    rng = np.random.default_rng(0)
    for x, y in zip(rng.integers(0, clean.shape[1], 25), rng.integers(0, clean.shape[0], 25)):
        dotted[y : y + 2, x : x + 2] = 0  # specks of dirt
    assert digits_model.read(dotted).text == number.text
    for gap in (12, -4):  # an underline below the digits, then one that touches them
        underlined = clean.copy()
        y = min(bottom + gap, clean.shape[0] - 5)
        cv2.line(underlined, (left - 10, y), (right + 10, y + 3), 0, 7, cv2.LINE_AA)
        assert digits_model.read(underlined).text == number.text, gap


def test_an_image_without_ink_reads_as_nothing(digits_model):
    for image in (np.full((120, 300), 255, np.uint8), np.zeros((280, 280, 4), np.uint8)):
        reading = digits_model.read(image)
        assert reading.text == "" and reading.digits == [] and reading.refused == []
        assert reading.confidence == 0.0 and reading.inputs.shape == (0, 784)


def test_read_a_generated_number_with_boxes_in_input_pixels(digits_model, mnist_test):
    images, labels = mnist_test
    for render in ("canvas", "paper"):
        number = next(numbers.numbers(images, labels, 1, 4, "apart", render, seed=11))
        reading = digits_model.read(number.data)
        assert isinstance(reading, Reading)
        assert reading.text == number.text and len(reading.text) == 4
        for digit, truth in zip(reading.digits, number.boxes):
            assert _iou(digit.box, truth) > 0.6, (render, digit.box, truth)
            x, y, w, h = digit.box
            assert 0 <= x and 0 <= y and x + w <= number.size[0] and y + h <= number.size[1]
        assert reading.confidence == pytest.approx(np.prod([d.confidence for d in reading.digits]))
        assert reading.inputs.shape == (4, 784) and reading.previews.shape == (4, 28, 28)
        document = json.loads(json.dumps(reading.to_json()))
        assert document["text"] == number.text and len(document["digits"][0]["box"]) == 4


def test_read_of_one_digit_matches_predict(digits_model):
    prediction = digits_model.predict("examples/seven.png")
    reading = digits_model.read("examples/seven.png")
    assert reading.text == "7" and prediction.box is None
    assert reading.digits[0].confidence == pytest.approx(prediction.confidence, abs=1e-6)
    prepared = digits_model.prepare("examples/seven.png")
    np.testing.assert_array_equal(reading.inputs, prepared.tensor)  # the same input, not a look-alike


def test_all_marks_go_through_the_model_in_one_batch(digits_model, mnist_test):
    images, labels = mnist_test
    number = next(numbers.numbers(images, labels, 1, 6, "touching", "canvas", seed=3))
    calls = []
    original = digits_model._call_network

    def counting(x):  # a spy around the real model call, not a replacement
        calls.append(int(x.shape[0]))
        return original(x)

    digits_model._call_network = counting
    try:
        digits_model.read(number.data)
    finally:
        del digits_model._call_network
    assert len(calls) == 1 and calls[0] >= 6
