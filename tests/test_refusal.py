"""Refusal: every prediction says whether its input is one of the model's classes (``in_domain``)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from digitrec.errors import CheckpointError
from digitrec.learning import outliers, refusal
from digitrec.model import checkpoints
from digitrec.model.domain import LAYOUTS, DomainSpec, new_head
from digitrec.model.recognizer import DigitRecognizer
from digitrec.runtime.tf_loader import tf
from digitrec.service.batcher import MicroBatcher

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def canvas_strokes(*strokes: list[tuple[int, int]]) -> np.ndarray:
    """What the drawing page sends: black round strokes 18 px wide on a white 280x280 canvas."""
    canvas = np.full((280, 280), 255, np.uint8)
    for stroke in strokes:
        cv2.polylines(canvas, [np.array(stroke, np.int32)], False, 0, 18, cv2.LINE_AA)
    return canvas


def letter_a() -> np.ndarray:
    return canvas_strokes([(70, 240), (140, 40), (210, 240)], [(100, 160), (180, 160)])


def noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)


def filled_disc() -> np.ndarray:
    canvas = np.full((280, 280), 255, np.uint8)
    cv2.circle(canvas, (140, 140), 80, 0, -1, cv2.LINE_AA)
    return canvas


@pytest.mark.parametrize("make", [letter_a, noise, filled_disc], ids=["letter A", "noise", "filled disc"])
def test_non_digits_are_refused_but_still_labelled(digits_model, make):
    prediction = digits_model.predict(make())
    assert prediction.in_domain is False
    assert prediction.domain_score < digits_model.domain.threshold
    assert prediction.name in digits_model.class_names  # the nearest label is still there


@pytest.mark.parametrize("name", ["seven.png", "four-on-paper.jpg"])
def test_digit_examples_are_accepted(digits_model, name):
    prediction = digits_model.predict(EXAMPLES / name)
    assert prediction.in_domain is True
    assert prediction.domain_score >= digits_model.domain.threshold


def test_garment_example_accepted_and_a_digit_refused_by_fashion(fashion_model):
    assert fashion_model.predict(EXAMPLES / "ankle-boot.jpg").in_domain is True
    assert fashion_model.predict(EXAMPLES / "seven.png").in_domain is False


def test_shipped_models_have_a_head_with_its_figures(digits_model, fashion_model):
    for model in (digits_model, fashion_model):
        block = model.metadata["domain"]
        assert model.domain == DomainSpec("head", block["threshold"], block["hidden"], block["layout"])
        figures = block["figures"]
        assert figures["held_out_refused"] <= refusal.FIT_SHARE + 0.0005  # the fitting rule held
        assert figures["non_domain_refused"] >= 0.95 and figures["auroc"] >= 0.98
        assert figures["in_domain_refused"] <= refusal.TARGET_REFUSED


def test_every_path_gives_the_same_domain_score(digits_model):
    images = [letter_a(), filled_disc(), str(EXAMPLES / "seven.png")]
    one_by_one = [digits_model.predict(image) for image in images]
    batch = digits_model.predict_batch(images)
    x = np.concatenate([digits_model.prepare(image).tensor for image in images])
    eager = digits_model._infer(tf.constant(x)).numpy()  # all cores, not the inline runner
    batcher = MicroBatcher(digits_model.predict_scores, max_batch=8)
    served = [digits_model.prediction_from_scores(row) for row in batcher.predict(x)]
    for single, batched, row, via_batcher in zip(one_by_one, batch, eager, served, strict=True):
        assert single.domain_score == pytest.approx(row[-1], abs=1e-4)
        assert batched.domain_score == pytest.approx(row[-1], abs=1e-4)
        assert via_batcher.in_domain == single.in_domain == batched.in_domain
    assert [p.in_domain for p in one_by_one] == [False, False, True]
    assert digits_model.predict_proba(x).shape == (3, 10)  # the probabilities alone, as before


def test_to_json_carries_the_refusal(digits_model):
    data = json.loads(json.dumps(digits_model.predict(filled_disc()).to_json()))
    assert data["in_domain"] is False and isinstance(data["domain_score"], float)


def test_prediction_from_proba_needs_the_domain_score(digits_model):
    row = digits_model.predict_scores(digits_model.prepare(letter_a()).tensor)[0]
    assert digits_model.prediction_from_proba(row).in_domain is False  # a predict_scores row
    assert digits_model.prediction_from_proba(row[:10], 100.0).in_domain is True
    with pytest.raises(ValueError, match="domain score"):
        digits_model.prediction_from_proba(row[:10])


def headless_copy(source: Path, target: Path) -> Path:
    """A model dir as it was before refusal heads: the classifier alone, no "domain" block."""
    target.mkdir()
    network, metadata = refusal.load_network(source)
    tf.train.Checkpoint(model=network).write(str(target / checkpoints.CHECKPOINT_PREFIX))
    metadata.pop("domain", None)
    checkpoints.write_metadata(target, metadata)
    return target


def test_old_checkpoint_without_a_head_still_works(digits_model, tmp_path):
    old = DigitRecognizer.load(headless_copy(digits_model.model_dir, tmp_path / "old"))
    assert old.domain == DomainSpec()  # energy, no threshold: nothing is refused
    x = np.concatenate([old.prepare(image).tensor for image in (letter_a(), str(EXAMPLES / "seven.png"))])
    np.testing.assert_allclose(old.predict_proba(x), digits_model.predict_proba(x), atol=1e-6)
    logits = old.logits(x)
    energy = np.log(np.exp(logits).sum(axis=1))
    for prediction, expected in zip(old.predict_batch([letter_a(), str(EXAMPLES / "seven.png")]), energy, strict=True):
        assert prediction.in_domain is True
        assert prediction.domain_score == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    ("model", "layout"), [("digits_model", layout) for layout in LAYOUTS] + [("fashion_model", "pooled_mean_max")]
)
def test_the_inference_graph_scores_as_the_head_on_its_inputs(request, tmp_path, model, layout):
    """The folded graph takes the pooled layouts' maxima after the max-pools, reduces in the network's
    dtype and, for a network with global average pooling (digits; fashion flattens), computes the
    logits and the head's first layer in one product; in float32 that must give the head's score on
    ``refusal.domain_inputs`` and the classifier's probabilities. A "domain" block without a layout is
    read as the first heads' (block_mean_max, 128 hidden), so their checkpoints load."""
    shipped = request.getfixturevalue(model)
    model_dir = headless_copy(shipped.model_dir, tmp_path / "m")
    network, _ = refusal.load_network(model_dir)
    hidden = 128 if layout == "block_mean_max" else 16
    head = new_head(network, hidden, seed=3, layout=layout)
    head.mean.assign(tf.random.stateless_uniform(head.mean.shape, seed=[1, 2]))
    head.b1.assign(tf.random.stateless_normal(head.b1.shape, seed=[1, 3]))
    block = {"method": "head", "threshold": 0.0, "hidden": hidden, "layout": layout}
    if layout == "block_mean_max":
        block = {"method": "head", "threshold": 0.0}  # as the first heads' model.json said it
    refusal.save_head(model_dir, network, head, block)
    loaded = DigitRecognizer.load(model_dir, precision="float32")
    assert loaded.domain.layout == layout
    images = (letter_a(), noise(), str(EXAMPLES / "seven.png"), str(EXAMPLES / "ankle-boot.jpg"))
    x = np.concatenate([loaded.prepare(image).tensor for image in images])
    expected = head(tf.constant(refusal.domain_inputs(network, x, layout=layout))).numpy()
    np.testing.assert_allclose(loaded.domain_scores(x), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(loaded.predict_proba(x), shipped.predict_proba(x), atol=1e-6)
    assert (loaded.predict_proba(x).argmax(axis=1) == network(tf.constant(x)).numpy().argmax(axis=1)).all()


def test_a_head_declared_but_missing_from_the_checkpoint_is_an_error(digits_model, tmp_path):
    broken = headless_copy(digits_model.model_dir, tmp_path / "broken")
    metadata = checkpoints.read_metadata(broken)
    metadata["domain"] = {"method": "head", "threshold": 0.0, "hidden": 128}
    checkpoints.write_metadata(broken, metadata)
    with pytest.raises(CheckpointError, match="does not match"):
        DigitRecognizer.load(broken)
    metadata["domain"] = {"method": "guess", "threshold": 0.0}
    checkpoints.write_metadata(broken, metadata)
    with pytest.raises(CheckpointError, match="domain method"):
        DigitRecognizer.load(broken)


@pytest.mark.slow
def test_fitted_head_survives_save_and_load_and_leaves_the_classifier_alone(digits_model, data_dir, tmp_path):
    model_dir = headless_copy(digits_model.model_dir, tmp_path / "digits")
    before = {
        n: tf.train.load_checkpoint(str(model_dir / "model")).get_tensor(n)
        for n, _ in tf.train.list_variables(str(model_dir / "model"))
        if n.startswith("model/")
    }
    tiny = refusal.Sizes(own_raw=300, own_rendered=100, own_scrambled=100, own_varied=100, synthetic_per_family=60,
                         other_raw=100, other_rendered=50, epochs=2, test_per_family=20, other_test=40)  # fmt: skip
    block = refusal.fit_domain_head(model_dir, data_dir, sizes=tiny, log=lambda message: None)

    reader = tf.train.load_checkpoint(str(model_dir / "model"))
    for name, value in before.items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)  # classifier unchanged, bit for bit
    assert checkpoints.read_metadata(model_dir)["domain"] == block
    assert set(block["trained_on"]["synthetic_kinds"]["shapes"]).isdisjoint(outliers.SHAPES["test"])

    loaded = DigitRecognizer.load(model_dir, precision="float32")  # float32, as the reference below
    assert loaded.domain == DomainSpec("head", block["threshold"], block["hidden"], block["layout"])
    network, _ = refusal.load_network(model_dir)
    head = new_head(network, block["hidden"], layout=block["layout"])
    tf.train.Checkpoint(domain_head=head).read(str(model_dir / "model")).expect_partial()
    x = np.concatenate([loaded.prepare(image).tensor for image in (letter_a(), noise(), str(EXAMPLES / "seven.png"))])
    expected = head(tf.constant(refusal.domain_inputs(network, x))).numpy()
    np.testing.assert_allclose(loaded.domain_scores(x), expected, atol=1e-4)
    shipped = DigitRecognizer.load(digits_model.model_dir, precision="float32")
    np.testing.assert_allclose(loaded.predict_proba(x), shipped.predict_proba(x), atol=1e-6)
    assert not any(p.name.startswith(".") for p in model_dir.iterdir() if p.is_dir())  # no staging left


def test_outlier_splits_share_no_kind():
    train, test = outliers.kinds("train"), outliers.kinds("test")
    for family in train:
        assert set(train[family]).isdisjoint(test[family]), family
    assert not set(outliers.LETTERS) & set("OoQDIlijJZzSsbGBgq")


def test_auroc_by_hand():
    assert refusal.auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert refusal.auroc(np.array([1.0]), np.array([1.0])) == 0.5
    assert refusal.auroc(np.array([2.0, 0.0]), np.array([1.0])) == 0.5


@pytest.mark.slow
def test_confirmed_corrections_keep_a_learnt_style_in_the_domain(digits_model, data_dir, tmp_path):
    """A fine-tune passes its corrections as ``confirmed``: fresh digits of that style are then refused
    less often than by a head fitted without them (same seed, same sizes)."""
    from finetune_styles import STYLES

    from digitrec.learning import datasets

    style = STYLES["dotted"]
    x_train, y_train = datasets.load_split("mnist", "train", data_dir)
    x_test, y_test = datasets.load_split("mnist", "test", data_dir)
    recognizer = DigitRecognizer.load(digits_model.model_dir, precision="float32")

    def styled(images, labels):
        return np.concatenate([recognizer.prepare(style.png(x, y)).tensor for x, y in zip(images, labels)])

    confirmed, fresh = styled(x_train[:150], y_train[:150]), styled(x_test[:150], y_test[:150])
    # without other writers' variations, which alone teach the head to accept most dotted digits
    tiny = refusal.Sizes(own_raw=300, own_rendered=100, own_scrambled=5000, own_varied=0, synthetic_per_family=60,
                         other_raw=100, other_rendered=50, epochs=2, test_per_family=20, other_test=40)  # fmt: skip
    refused = {}
    for name, extra in (("without", None), ("with", confirmed)):
        model_dir = headless_copy(digits_model.model_dir, tmp_path / name)
        block = refusal.fit_domain_head(model_dir, data_dir, sizes=tiny, confirmed=extra, log=lambda message: None)
        loaded = DigitRecognizer.load(model_dir, precision="float32")
        refused[name] = float(np.mean(loaded.domain_scores(fresh) < block["threshold"]))
        assert block["trained_on"]["confirmed"]["corrected_images"] == (0 if extra is None else 150)
    assert refused["with"] < refused["without"] - 0.2, refused
