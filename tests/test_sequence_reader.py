"""The sequence reader of touching digits (``digitrec.model.sequence``) and how ``read`` uses it.

Numbers are composed from MNIST training digits 50,000-59,999, which the sequence reader never
trained on (it learnt from digits 0-49,999), touching or overlapping by up to 2 px at 28 px scale.
"""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.imaging import segment as segmentation
from digitrec.imaging.preprocess import load_image
from digitrec.learning import numbers
from digitrec.model import checkpoints
from digitrec.model.marks import serving_judge
from digitrec.model.sequence import BLANK, DIGITS, STRIDE, SequenceReader, decode, strip_input


@pytest.fixture(scope="module")
def held_out(data_dir):
    from digitrec.learning.datasets import load_split

    images, labels = load_split("mnist", "train", data_dir)
    return images[50000:], labels[50000:]


@pytest.fixture(scope="module")
def reader() -> SequenceReader:
    return SequenceReader.load(checkpoints.shipped_models_dir() / "sequence")


def _touching(held_out, count: int, seed: int) -> list[numbers.NumberImage]:
    images, labels = held_out
    return list(numbers.numbers(images, labels, count, 4, "touching", "canvas", seed=seed))


def test_decode_merges_repeats_and_drops_blanks():
    columns = [BLANK, 3, 3, BLANK, 3, 7, 7, BLANK]
    probabilities = np.full((len(columns), DIGITS + 1), 0.01)
    probabilities[np.arange(len(columns)), columns] = 0.9
    decoded = decode(probabilities)
    assert decoded.labels == [3, 3, 7]  # a blank between two 3s keeps both
    assert decoded.spans == [(1, 2), (4, 4), (5, 6)]
    assert decoded.confidences == pytest.approx([0.9, 0.9, 0.9])
    assert decoded.path_probability == pytest.approx(0.9 ** len(columns))


def test_strip_input_keeps_the_aspect_at_a_fixed_height():
    mask = np.ones((140, 300), np.uint8)
    strip = strip_input(mask)
    assert strip.shape[0] == 32 and strip.shape[1] % STRIDE == 0
    assert abs(strip[2:30].any(axis=0).sum() - round(300 * 28 / 140)) <= 1


def test_the_reader_reads_touching_numbers_uncut(held_out, reader):
    """Whole blobs (as ``segment`` finds them) of touching 4-digit numbers, read without cutting."""
    right = 0
    numbers_ = _touching(held_out, 30, seed=5)
    for number in numbers_:
        segments = segmentation.segment(load_image(number.data), "digit")
        masks = [segmentation.union(segments.parts[a : b + 1])[1] for a, b in segments.blobs()]
        text = "".join("".join(map(str, d.labels)) for d in reader.read(masks))
        right += text == number.text
    assert right >= 0.7 * len(numbers_)


def test_read_gives_the_sequence_readers_digits_boxes_in_order(held_out, digits_model):
    """Where ``read`` takes a blob's digits from the sequence reader, each digit's box lies over the
    digit written there, left to right."""
    checked = 0
    for number in _touching(held_out, 30, seed=6):
        reading = digits_model.read(number.data)
        if reading.text != number.text:
            continue
        centres = [d.box[0] + d.box[2] / 2.0 for d in reading.digits]
        assert centres == sorted(centres)
        for digit, (x, _, w, _) in zip(reading.digits, number.boxes):
            assert x - 0.25 * w <= digit.box[0] + digit.box[2] / 2.0 <= x + 1.25 * w
        checked += 1
    assert checked >= 20


def test_read_with_the_sequence_reader_beats_the_segmentation_alone(held_out, digits_model):
    numbers_ = _touching(held_out, 30, seed=7)
    with_reader = sum(digits_model.read(n.data).text == n.text for n in numbers_)
    try:
        digits_model.sequence_reading = False
        alone = sum(digits_model.read(n.data).text == n.text for n in numbers_)
    finally:
        digits_model.sequence_reading = True
    assert with_reader >= alone + 3


def test_a_shape_the_refusal_head_refuses_is_not_made_digits(digits_model):
    """A filled oval as wide as three digits: ``segment`` cuts it, the sequence reader (which knows
    only digits) reads a digit into it, but the refusal head refused most of the segmentation's
    marks there, so its reading stays the segmentation's and the shape is not read as a number."""
    import cv2

    canvas = np.full((280, 700), 255, np.uint8)
    cv2.ellipse(canvas, (350, 140), (250, 80), 0, 0, 360, 0, -1)
    ok, data = cv2.imencode(".png", canvas)
    assert ok
    segments = segmentation.segment(canvas, "digit", judge=serving_judge("digit"))
    masks = [segmentation.union(segments.parts[a : b + 1])[1] for a, b in segments.blobs() if b > a]
    assert masks  # the oval was cut: the sequence reader looks at it ...
    reader = digits_model._sequence_reader()
    assert reader is not None and reader.read(masks)[0].labels  # ... and reads a digit into it
    reading = digits_model.read(data.tobytes())
    assert len(reading.refused) >= 1
    assert len(reading.text) <= 1
