"""Digits by writers outside the training set: the refusal head accepts them, and a reading keeps a
mark that stands in a row of accepted digits unless it scores far below the threshold.

The held-out writers are UCI optdigits as scikit-learn ships it (the same images as
benchmarks/bench_reading.py); nothing trains on them.
"""

from __future__ import annotations

import numpy as np
import pytest

from digitrec.learning import writers
from digitrec.model.reading import ROW_PRIOR, Reading
from digitrec.model.recognizer import Prediction

THRESHOLD = -2.0


def _mark(name: str, score: float, x: int, height: int = 100) -> Prediction:
    label = int(name)
    probabilities = [0.0] * 10
    probabilities[label] = 0.99
    return Prediction(label, name, 0.99, probabilities, score >= THRESHOLD, score, (x, 10, 60, height))


def _inputs(n: int) -> np.ndarray:
    return np.arange(n * 784, dtype=np.float32).reshape(n, 784) / (n * 784)


def test_a_mark_just_below_the_threshold_between_digits_is_read():
    marks = [_mark("1", 3.0, 0), _mark("7", THRESHOLD - ROW_PRIOR / 2, 80), _mark("4", 2.0, 160)]
    reading = Reading.from_marks(marks, _inputs(3), THRESHOLD)
    assert reading.text == "174"
    assert [d.in_domain for d in reading.digits] == [True, True, True]
    assert reading.refused == []
    assert np.array_equal(reading.inputs, _inputs(3))


def test_a_mark_far_below_the_threshold_stays_refused_in_a_row():
    marks = [_mark("1", 3.0, 0), _mark("4", THRESHOLD - ROW_PRIOR - 0.5, 80), _mark("2", 2.0, 160)]
    reading = Reading.from_marks(marks, _inputs(3), THRESHOLD)
    assert reading.text == "12"
    assert len(reading.refused) == 1 and not reading.refused[0].in_domain
    assert np.array_equal(reading.refused_inputs, _inputs(3)[1:2])


def test_a_mark_alone_or_without_a_threshold_keeps_its_refusal():
    alone = Reading.from_marks([_mark("4", THRESHOLD - 0.1, 0)], _inputs(1), THRESHOLD)
    assert alone.text == "" and len(alone.refused) == 1
    marks = [_mark("1", 3.0, 0), _mark("7", THRESHOLD - 0.1, 80)]
    assert Reading.from_marks(marks, _inputs(2)).text == "1"


def test_a_mark_of_another_size_than_the_digits_beside_it_stays_refused():
    marks = [_mark("1", 3.0, 0), _mark("0", THRESHOLD - 0.1, 80, height=300), _mark("2", 2.0, 400)]
    assert Reading.from_marks(marks, _inputs(3), THRESHOLD).text == "12"


def test_a_refused_mark_only_next_to_another_refused_mark_stays_refused():
    marks = [_mark("1", 3.0, 0), _mark("5", THRESHOLD - 3 * ROW_PRIOR, 80), _mark("8", THRESHOLD - 0.1, 160)]
    reading = Reading.from_marks(marks, _inputs(3), THRESHOLD)
    assert reading.text == "1" and len(reading.refused) == 2


def test_writers_variations_are_white_on_black_digits_with_a_margin(mnist_test):
    images, _ = mnist_test
    rng = np.random.default_rng(0)
    for image in writers.varied(images[:40], rng):
        assert image.dtype == np.uint8 and image.ndim == 2 and image.shape[0] >= 40
        assert image.max() > 128  # ink survives every variation
        border = np.concatenate([image[:3].ravel(), image[-3:].ravel(), image[:, :3].ravel(), image[:, -3:].ravel()])
        assert border.max() < 64  # the digit does not run off the sheet


@pytest.mark.slow
def test_the_shipped_head_accepts_digits_of_writers_it_never_saw(digits_model):
    sklearn_datasets = pytest.importorskip("sklearn.datasets", reason="optdigits comes with scikit-learn")
    import cv2

    digits = sklearn_datasets.load_digits()
    images = []
    for counts in digits.images[:600]:
        big = cv2.resize((counts / 16.0).astype(np.float32), (32, 32), interpolation=cv2.INTER_CUBIC)
        images.append(cv2.copyMakeBorder(np.clip(big * 255, 0, 255).astype(np.uint8), 2, 2, 2, 2, cv2.BORDER_CONSTANT))
    predictions = digits_model.predict_batch(images)
    refused = np.mean([not p.in_domain for p in predictions])
    right = np.mean([p.label for p in predictions] == digits.target[:600])
    assert refused < 0.03, f"{refused:.1%} of optdigits digits refused"  # 25 % before the head saw other hands
    assert right > 0.95
