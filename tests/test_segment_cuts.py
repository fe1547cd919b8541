"""Which blobs ``segment`` cuts, and how ``read`` judges marks cut off a touching digit.

A blob a little wider than one digit is cut only when the judge (the mark scorer) doubts that it is
one whole digit: a broad digit standing alone costs one candidate mark, not a dozen. A mark cut off
a digit it touched is refused only well below the refusal head's threshold.
"""

from __future__ import annotations

import cv2
import numpy as np

from digitrec.imaging import segment as segmentation
from digitrec.learning import numbers
from digitrec.model.marks import serving_judge
from digitrec.model.recognizer import CUT_MARGIN


def _broad_zero() -> np.ndarray:
    """A 0 about 1.1 times as wide as it is tall, alone: wider than ``CUT_WIDTH`` line heights."""
    page = np.full((220, 300), 255, np.uint8)
    cv2.ellipse(page, (150, 110), (88, 75), 0, 0, 360, 0, 14, cv2.LINE_AA)
    return page


def _judged(verdict: float):
    calls = []

    def judge(inputs: np.ndarray, features: np.ndarray) -> np.ndarray:
        calls.append((inputs.shape, features.shape))
        return np.full(len(inputs), verdict)

    return judge, calls


def test_a_broad_blob_the_judge_takes_for_one_digit_is_not_cut():
    image = _broad_zero()
    uncut = segmentation.segment(image)
    assert uncut.pieces > 1  # without a judge, its width alone gets it cut
    sure, calls = _judged(np.log(0.99))
    spared = segmentation.segment(image, judge=sure)
    assert calls == [((1, 784), (1, segmentation.FEATURES))]  # the one broad blob, in one call
    assert spared.pieces == 1 and len(spared.candidates) == 1
    doubtful, _ = _judged(np.log(0.3))
    assert segmentation.segment(image, judge=doubtful).pieces == uncut.pieces


def test_narrow_and_very_wide_blobs_are_not_judged():
    page = np.full((220, 900), 255, np.uint8)
    cv2.line(page, (60, 30), (60, 190), 0, 14, cv2.LINE_AA)  # a 1: narrow, nothing to cut
    cv2.ellipse(page, (500, 110), (330, 75), 0, 0, 360, 0, 14, cv2.LINE_AA)  # far wider than a digit
    judge, calls = _judged(np.log(0.99))
    result = segmentation.segment(page, judge=judge)
    assert calls == []
    assert result.pieces > 2  # the wide blob is cut whatever a judge would say


def test_the_serving_scorer_leaves_broad_digits_of_apart_numbers_whole(mnist_test):
    """Apart numbers: every blob is one digit, so with the scorer as judge nothing is cut (the cost
    goal of read: broad digits made a dozen candidates each)."""
    images, labels = mnist_test
    judge = serving_judge("digit")
    assert judge is not None
    broad = spared = 0
    for number in numbers.numbers(images, labels, 40, 4, "apart", "canvas", seed=11):
        image = number.image()
        plain, judged = segmentation.segment(image), segmentation.segment(image, judge=judge)
        broad += plain.pieces > 4
        spared += plain.pieces > 4 and judged.pieces == 4
    assert broad >= 10
    assert spared >= 0.85 * broad, (spared, broad)


def test_serving_judge_is_for_digits_only():
    assert serving_judge("garment") is None


def _segmentation(left_cut: list[bool], right_cut: list[bool]) -> segmentation.Segmentation:
    n = len(left_cut)
    features = np.zeros((n, segmentation.FEATURES), np.float32)
    features[:, segmentation.FEATURE_NAMES.index("left_cut")] = left_cut
    features[:, segmentation.FEATURE_NAMES.index("right_cut")] = right_cut
    candidates = [segmentation.Candidate(i, i, (10 * i, 0, 10, 10), 0.0) for i in range(n)]
    empty = np.zeros((n, 784), np.float32)
    return segmentation.Segmentation(
        candidates, empty, np.zeros((n, 28, 28), np.uint8), np.zeros(n - 1), np.zeros(n - 1), 10.0, n, features
    )


def test_a_mark_cut_off_a_digit_gets_the_lower_threshold(digits_model):
    threshold = digits_model.domain.threshold
    # marks 0|1 cut apart, 1 and 2 apart, 2|3 cut apart
    seg = _segmentation([False, True, False, True], [True, False, True, False])
    low = threshold - 1.0  # refused at the model's threshold, within the margin
    scores = np.array([threshold + 5, low, low, threshold - CUT_MARGIN - 1])
    got = digits_model._mark_thresholds(seg, [0, 1, 2, 3], scores)
    assert got[1] == threshold - CUT_MARGIN  # cut off mark 0, which reads as a digit
    assert got[0] == threshold  # its cut neighbour (mark 1) is not accepted at the full threshold
    assert got[2] == threshold  # its cut neighbour (mark 3) is refused: no lower threshold
    assert got[3] == threshold


def test_a_cut_runs_between_the_valleys_of_two_rings_pressed_together():
    """Two 0s pressed together leave a valley above and below their contact; a cut runs between them
    and leaves each ring whole on its side."""
    left_ring, right_ring = np.zeros((220, 300), np.uint8), np.zeros((220, 300), np.uint8)
    cv2.ellipse(left_ring, (85, 110), (45, 80), 0, 0, 360, 1, 16)
    cv2.ellipse(right_ring, (179, 110), (45, 80), 0, 0, 360, 1, 16)
    mask = left_ring | right_ring
    x, y, w, h = cv2.boundingRect(mask)
    crop = np.ascontiguousarray(mask[y : y + h, x : x + w])
    only_left = (left_ring[y : y + h, x : x + w] > 0) & (right_ring[y : y + h, x : x + w] == 0)
    only_right = (right_ring[y : y + h, x : x + w] > 0) & (left_ring[y : y + h, x : x + w] == 0)
    small = cv2.resize(crop.astype(np.float32), (round(w * 32 / h), 32), interpolation=cv2.INTER_AREA)
    cuts = segmentation._valley_cuts(crop, float(h), 16.0, small)
    ys, xs = np.nonzero(crop)
    separating = []
    for _, seam in cuts:
        left = np.zeros_like(crop, bool)
        left[ys, xs] = xs < seam[ys]
        separating.append((left & only_left).sum() / only_left.sum() > 0.98 and not (left & only_right).any())
    assert any(separating), cuts
    assert segmentation._valley_cuts(np.ascontiguousarray(left_ring[y : y + h, 40:140]), float(h), 16.0, small) == []
