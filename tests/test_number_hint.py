"""The cheap look predict takes for several digits in one image: it must pass over almost every single
MNIST digit (each one it flags costs a reading) and flag rows of digits, on the real 28x28 model inputs."""

from __future__ import annotations

import cv2
import numpy as np

from digitrec.service.number_hint import can_read, may_hold_several
from tests.service_helpers import mnist_test, recognizer


def preview(paper: np.ndarray) -> np.ndarray:
    """The 28x28 the digits model sees for a dark-on-white image."""
    return recognizer("digits").prepare(paper).preview


def on_paper(strip: np.ndarray, scale: int = 4) -> np.ndarray:
    big = cv2.resize(strip, (strip.shape[1] * scale, strip.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    return 255 - big


def test_single_mnist_digits_are_rarely_taken_for_several():
    images, _ = mnist_test()
    flagged = sum(may_hold_several(preview(on_paper(images[i]))) for i in range(400))
    assert flagged <= 8, f"{flagged} of 400 single digits would be read to be sure"  # 2 %


def test_rows_of_digits_are_flagged():
    images, labels = mnist_test()
    pairs = [np.hstack([images[i], np.zeros((28, 4), np.uint8), images[i + 1]]) for i in range(0, 200, 2)]
    flagged = sum(may_hold_several(preview(on_paper(pair))) for pair in pairs)
    assert flagged >= 97, f"only {flagged} of 100 two-digit numbers flagged"
    ones = [i for i in range(2000) if labels[i] == 1][:20]
    eleven = [np.hstack([images[a], np.zeros((28, 6), np.uint8), images[b]]) for a, b in zip(ones[::2], ones[1::2])]
    assert sum(may_hold_several(preview(on_paper(pair))) for pair in eleven) >= 9  # "11": narrow, but two marks


def test_a_blank_preview_is_not_several():
    assert not may_hold_several(np.zeros((28, 28), np.uint8))


def test_only_digit_models_that_read_can_tell():
    class Garments:
        style = "garment"

        def read(self, image):  # pragma: no cover - never called
            raise AssertionError

    assert not can_read(Garments())
    assert not can_read(object())  # no read() at all
