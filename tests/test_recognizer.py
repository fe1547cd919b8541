"""The shipped models and the public API: accuracy on the real test sets, predict on files, bytes, arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
from imaging import canvas_stroke, jpeg, on_paper, png

import digitrec
from digitrec.errors import InvalidImageError, ModelNotFoundError, NoDigitFoundError
from digitrec.model import checkpoints
from digitrec.model.calibration import softmax
from digitrec.model.inputs import to_inputs
from digitrec.model.recognizer import DigitRecognizer, Prediction


def _accuracy(model: DigitRecognizer, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(model.predict_proba(to_inputs(images)).argmax(1) == labels))


def test_shipped_digits_accuracy(digits_model, mnist_test):
    images, labels = mnist_test
    accuracy = _accuracy(digits_model, images, labels)
    assert accuracy >= 0.9965
    assert accuracy == pytest.approx(digits_model.metadata["test_accuracy"], abs=2e-4)


def test_shipped_fashion_accuracy(fashion_model, fashion_test):
    images, labels = fashion_test
    assert _accuracy(fashion_model, images, labels) >= 0.935
    assert fashion_model.class_names[:2] == ["T-shirt/top", "Trouser"]
    assert fashion_model.style == "garment"


def test_model_cards_say_how_they_were_made():
    for name in checkpoints.SHIPPED_MODELS:
        directory = checkpoints.shipped_models_dir() / name
        meta = json.loads((directory / "model.json").read_text())
        assert meta["architecture"] == "digitrec-cnn" and meta["command"].startswith("digitrec train")
        assert len(meta["class_names"]) == 10 and meta["training"]["epochs"] >= 1
        size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
        assert size < 5_000_000, f"{name} ships {size} bytes"


def test_predict_from_path_bytes_and_array(tmp_path, digits_model, mnist_test):
    images, labels = mnist_test
    digit, label = images[0], int(labels[0])
    paper = on_paper(digit)
    path = tmp_path / "digit.png"
    path.write_bytes(png(paper))
    for source in (path, str(path), png(paper), jpeg(paper), paper, png(canvas_stroke(digit))):
        prediction = digits_model.predict(source)
        assert isinstance(prediction, Prediction)
        assert prediction.label == label and prediction.name == str(label)
        assert prediction.confidence == pytest.approx(max(prediction.probabilities))
        assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-4)
        assert len(prediction.probabilities) == 10
    assert prediction.to_json()["label"] == label


def test_predict_batch_is_one_model_call(digits_model, mnist_test):
    images, labels = mnist_test
    sources = [png(on_paper(images[i], scale=4)) for i in range(32)]
    calls = []
    original = digits_model._call_network

    def counting(x):  # a spy around the real model call, not a replacement
        calls.append(int(x.shape[0]))
        return original(x)

    digits_model._call_network = counting
    try:
        batch = digits_model.predict_batch(sources)
    finally:
        del digits_model._call_network  # back to the class's method
    assert calls == [32]
    assert [p.label for p in batch] == [digits_model.predict(s).label for s in sources]
    assert np.mean([p.label for p in batch] == labels[:32]) >= 0.95
    assert digits_model.predict_batch([]) == []


def test_paper_renderings_are_recognised(digits_model, mnist_test):
    images, labels = mnist_test
    rng = np.random.default_rng(7)
    idx = rng.choice(len(images), 300, replace=False)
    correct = 0
    for i in idx:
        scale = int(rng.integers(4, 13))
        shift = (int(rng.integers(-30, 31)), int(rng.integers(-30, 31)))
        ink = [(20, 20, 20), (170, 60, 10), (30, 30, 200)][int(rng.integers(3))]
        correct += digits_model.predict(on_paper(images[i], scale=scale, ink_bgr=ink, offset=shift)).label == labels[i]
    assert correct / len(idx) >= 0.98


def test_fashion_photo_of_a_shoe(fashion_model, fashion_test):
    images, labels = fashion_test
    boots = np.flatnonzero(labels == 9)[:50]
    hits = sum(fashion_model.predict(on_paper(images[i], ink_bgr=(0, 0, 0), paper_bgr=(255, 255, 255))).label == 9
               for i in boots)  # fmt: skip
    assert hits >= 45
    assert fashion_model.predict(png(on_paper(images[boots[0]], paper_bgr=(255, 255, 255)))).name == "Ankle boot"


def test_predict_proba_contract(digits_model):
    x = np.zeros((3, 784), np.float32)
    assert digits_model.predict_proba(x).shape == (3, 10)
    assert digits_model.predict_proba(np.zeros((0, 784), np.float32)).shape == (0, 10)
    with pytest.raises(InvalidImageError, match=r"\(N, 784\)"):
        digits_model.predict_proba(np.zeros((2, 28, 28), np.float32))


def test_errors_are_clear(digits_model):
    with pytest.raises(NoDigitFoundError):
        digits_model.predict(np.full((100, 100), 255, np.uint8))
    with pytest.raises(InvalidImageError):
        digits_model.predict(b"not an image")
    with pytest.raises(ModelNotFoundError, match="no model named 'nope'"):
        DigitRecognizer.load("nope")
    with pytest.raises(ModelNotFoundError, match="no model loaded"):
        DigitRecognizer().predict_proba(np.zeros((1, 784), np.float32))


def test_models_dir_takes_precedence(tmp_path, digits_model):
    import shutil

    copy = tmp_path / "digits"
    shutil.copytree(checkpoints.shipped_models_dir() / "digits", copy, ignore=shutil.ignore_patterns("training_state"))
    meta = json.loads((copy / "model.json").read_text())
    meta["version"] = "operator-retrained"
    (copy / "model.json").write_text(json.dumps(meta))
    assert DigitRecognizer.load("digits", models_dir=tmp_path).version == "operator-retrained"
    assert DigitRecognizer.load(copy).version == "operator-retrained"


def test_seed_compatible_api(tmp_path, mnist_test):
    images, labels = mnist_test
    path = tmp_path / "x.png"
    path.write_bytes(png(on_paper(images[1])))
    recognizer = digitrec.DigitRecognizer()
    recognizer.Load_Model(checkpoints.shipped_models_dir(), "digits")
    processed, original = digitrec.load_input_image(str(path))
    assert original.shape[:2] == (28 * 8 + 80, 28 * 8 + 80)
    label = recognizer.Predict_Label(processed)
    assert isinstance(label, int) and label == labels[1]
    # Load_Model(dir, checkpoint prefix) inside one model directory works too.
    again = digitrec.DigitRecognizer().Load_Model(checkpoints.shipped_models_dir() / "digits", "model")
    assert again.Predict_Label(processed) == label


def test_folded_float32_inference_matches_the_trained_network(mnist_test):
    exact = DigitRecognizer.load("digits", precision="float32")
    assert exact.precision == "float32"
    images, _ = mnist_test
    x = to_inputs(images[:200])
    # the trained network's logits, divided by the calibration temperature of model.json
    expected = softmax(exact._network.logits(x).numpy(), exact.temperature)
    np.testing.assert_allclose(exact.predict_proba(x), expected, atol=1e-5)


def test_bfloat16_inference_agrees_with_float32(mnist_test):
    """bfloat16 (picked automatically on CPUs with AMX) must not change answers, only speed."""
    exact = DigitRecognizer.load("digits", precision="float32")
    fast = DigitRecognizer.load("digits", precision="bfloat16")
    assert fast.precision == "bfloat16"
    images, labels = mnist_test
    x = to_inputs(images[:2000])
    p32, p16 = exact.predict_proba(x), fast.predict_proba(x)
    assert np.abs(p32 - p16).max() < 0.05
    assert np.mean(p32.argmax(1) == p16.argmax(1)) >= 0.999
    assert np.mean(p16.argmax(1) == labels[:2000]) >= 0.99


def test_precision_choice(monkeypatch):
    from digitrec.model import network

    assert network.resolve_precision("float32") == "float32"
    assert network.resolve_precision("BFloat16") == "bfloat16"
    expected = "bfloat16" if "amx_bf16" in network.cpu_flags() else "float32"
    assert network.resolve_precision("auto") == expected
    monkeypatch.setenv(network.PRECISION_ENV_VAR, "float32")
    assert network.resolve_precision() == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        network.resolve_precision("float16")


@pytest.mark.parametrize("dataset", ["mnist", "fashion"])
def test_images_already_in_the_dataset_format_are_predicted_as_the_network_sees_them(
    dataset, request, digits_model, fashion_model
):
    """predict_batch on raw 28x28 test images must agree with predict_proba on the same tensors: the
    pipeline leaves an image in the model's own format as it is (re-preprocessing them cost 0.2 / 1 point)."""
    images, labels = request.getfixturevalue(f"{dataset}_test")
    model = digits_model if dataset == "mnist" else fashion_model
    images, labels = images[:3000], labels[:3000]
    direct = model.predict_proba(to_inputs(images)).argmax(1)
    through = np.array([p.label for p in model.predict_batch(list(images))])
    direct_accuracy, through_accuracy = np.mean(direct == labels), np.mean(through == labels)
    assert abs(through_accuracy - direct_accuracy) <= 0.0005, (direct_accuracy, through_accuracy)
    # the same image sent as a PNG file is used as it is, too
    prepared = model.prepare(png(images[0]))
    np.testing.assert_array_equal(prepared.preview, images[0])


def test_a_28x28_image_not_framed_like_the_dataset_still_goes_through_the_pipeline(digits_model, mnist_test):
    from digitrec.imaging.preprocess import as_canonical

    images, _ = mnist_test
    seven = images[0]
    assert as_canonical(seven, "digit") is not None
    import cv2

    x, y, w, h = cv2.boundingRect((seven > 0).astype(np.uint8))
    filling = cv2.resize(seven[y : y + h, x : x + w], (26, 26))  # the digit fills the whole field
    big = np.zeros((28, 28), np.uint8)
    big[1:27, 1:27] = filling
    off_centre = np.roll(seven, 6, axis=1)  # moved to the right
    dark_on_light = 255 - seven  # paper polarity
    for image in (big, off_centre, dark_on_light):
        assert as_canonical(image, "digit") is None
        preview = digits_model.prepare(image).preview
        assert as_canonical(preview, "digit") is not None  # the pipeline made it canonical
    assert digits_model.predict(big).label == digits_model.predict(seven).label == 7
