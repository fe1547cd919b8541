"""Reading digits that touch: narrow touching pairs, the mark scorer, and touching numbers.

The numbers are composed from MNIST test digits (the models never trained on them; the mark scorer
trained on numbers made from MNIST training digits). Whole-number accuracy over many numbers is a
figure (benchmarks/bench_reading.py); these tests pin down fixed cases.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from digitrec.imaging import segment as segmentation
from digitrec.learning import numbers
from digitrec.learning.marks import _logits, label_candidates
from digitrec.model import checkpoints
from digitrec.model.marks import WEIGHTS, load_scorer


def _pair(images, labels, first: int, second: int, overlap: int) -> numbers.NumberImage:
    strip = numbers.compose(
        [images[first], images[second]],
        [labels[first], labels[second]],
        "touching",
        np.random.default_rng(first),
        overlap=overlap,
    )
    return numbers.canvas(strip)


def _one_blob(number: numbers.NumberImage) -> tuple[int, int]:
    """The width and height of the largest blob of ink (what the reader counts as ink)."""
    ink = (number.image()[..., 0] < 215).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    x, y, w, h, _ = stats[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    assert all(x <= bx + bw // 2 < x + w for bx, _, bw, _ in number.boxes)  # one blob spans both digits
    return int(w), int(h)


def _narrow_pair(images, labels, first: int, second: int) -> numbers.NumberImage | None:
    """Two test digits slid together until they touch, then 1 px further; None unless they make one
    blob of ink no wider than 1.25 line heights (one broad digit: width alone does not say "two")."""
    number = _pair(images, labels, first, second, overlap=1)
    width, height = _one_blob(number)
    return number if width < 1.25 * height else None


# MNIST test images 1 (a 2), 2 (a 1), 5 (a 1), 7 (a 9), 6 (a 4), 14 (a 1), 9 (a 9), 29 (a 1)
@pytest.mark.parametrize(("first", "second"), [(1, 2), (5, 7), (6, 14), (9, 29)])
def test_a_narrow_touching_pair_with_a_one_is_split(digits_model, mnist_test, first, second):
    images, labels = mnist_test
    number = _narrow_pair(images, labels, first, second)
    assert number is not None
    assert digits_model.read(number.data).text == number.text


def test_narrow_touching_pairs_with_a_one(digits_model, mnist_test):
    """Every narrow touching pair of one of the test set's first six 1s and one of its first ten other
    digits, either way round: blobs that used to be read as one digit, every time."""
    images, labels = mnist_test
    ones = [i for i in range(60) if labels[i] == 1][:6]
    others = [i for i in range(60) if labels[i] != 1][:10]
    right = tried = 0
    for one in ones:
        for other in others:
            for first, second in ((one, other), (other, one)):
                number = _narrow_pair(images, labels, first, second)
                if number is not None:
                    tried += 1
                    right += digits_model.read(number.data).text == number.text
    assert tried >= 100
    assert right >= 0.2 * tried, (right, tried)


def test_touching_numbers_from_mnist_test_digits(digits_model, mnist_test):
    """3-digit numbers, all neighbours touching or overlapping by up to 2 px: split into the right
    marks with the right labels (a cut-off digit the refusal head refuses still counts as split)."""
    images, labels = mnist_test
    right = 0
    for number in numbers.numbers(images, labels, 30, 3, "touching", "canvas", seed=41):
        reading = digits_model.read(number.data)
        marks = sorted(reading.digits + reading.refused, key=lambda mark: mark.box[0] + mark.box[2] / 2)
        right += "".join(mark.name for mark in marks) == number.text
    assert right >= 13, right  # 11 of 30 when only blobs wider than 1.25 line heights were cut


def test_the_mark_scorer_ships_small_with_how_it_was_trained():
    scorer = load_scorer()
    assert scorer is not None
    folder = checkpoints.shipped_models_dir() / "marks"
    size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
    assert size < 1_000_000
    metadata = json.loads((folder / "model.json").read_text())
    assert "MNIST training digits" in metadata["trained_on"]
    assert metadata["command"].startswith("python -m digitrec.learning.marks") and "--seed" in metadata["command"]
    assert metadata["features"] == list(segmentation.FEATURE_NAMES)
    assert metadata["evaluation"]["held_out"]["auroc"] >= 0.95


def test_the_numpy_scorer_matches_the_training_graph():
    from digitrec.runtime.tf_loader import tf

    scorer = load_scorer()
    module = tf.Module()
    for name in WEIGHTS:
        setattr(module, name, tf.constant(scorer.weights[name]))
    rng = np.random.default_rng(0)
    x = rng.random((7, 784), np.float32)
    f = rng.normal(size=(7, segmentation.FEATURES)).astype(np.float32)
    expected = _logits(tf, module, tf.constant(x), tf.constant(f)).numpy()
    np.testing.assert_allclose(scorer.logits(x, f), expected, rtol=1e-4, atol=1e-4)


def test_whole_digits_outscore_fragments_and_pairs(mnist_test):
    """On the candidates of touching numbers, the scorer ranks marks made of one whole digit's ink
    above fragments and digits run together (labelled from which digit laid each pixel)."""
    from digitrec.imaging.preprocess import load_image
    from digitrec.learning.marks import _owners_in_image

    images, labels = mnist_test
    scorer = load_scorer()
    rng = np.random.default_rng(5)
    whole, wrong = [], []
    for _ in range(6):
        chosen = rng.choice(len(images), size=3, replace=False)
        strip = numbers.compose([images[i] for i in chosen], [int(labels[i]) for i in chosen], "touching", rng)
        number = numbers.canvas(strip)
        seg = segmentation.segment(load_image(number.data))
        verdict = label_candidates(seg, _owners_in_image(number, strip.owners), 3)
        scores = scorer.log_whole(seg.inputs, seg.features)
        whole.extend(scores[verdict == 1.0])
        wrong.extend(scores[verdict == 0.0])
    assert len(whole) >= 6 and len(wrong) >= 30
    assert np.median(whole) > np.log(0.5) > np.median(wrong)
    pairs = np.array(whole)[:, None] > np.array(wrong)[None, :]
    assert pairs.mean() > 0.9  # AUROC on these marks
