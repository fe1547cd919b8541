"""Calibrated confidence: the ECE and temperature fit, and the temperature applied by the recognizer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.errors import CheckpointError
from digitrec.learning import validation
from digitrec.model import calibration, checkpoints, versions
from digitrec.model.inputs import to_inputs
from digitrec.model.recognizer import DigitRecognizer


def test_ece_by_hand():
    # bin (0.6, 0.667]: two samples at 0.65, one right -> |0.5 - 0.65| = 0.15, weight 2/4
    # bin (0.933, 1.0]: two samples at 0.95, both right -> |1 - 0.95| = 0.05, weight 2/4
    p = np.array([[0.65, 0.35], [0.35, 0.65], [0.95, 0.05], [0.05, 0.95]])
    labels = np.array([0, 0, 0, 1])
    assert calibration.expected_calibration_error(p, labels) == pytest.approx(0.5 * 0.15 + 0.5 * 0.05)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert calibration.expected_calibration_error(perfect, np.array([0, 1])) == 0.0


def test_fit_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 10))
    true_t = 2.5
    p = calibration.softmax(logits, true_t)
    labels = np.array([rng.choice(10, p=row) for row in p])
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_t, rel=0.05)
    # at the fitted temperature these labels are well calibrated, at T = 1 they are not
    assert calibration.expected_calibration_error(calibration.softmax(logits, fitted), labels) < 0.02
    assert calibration.expected_calibration_error(calibration.softmax(logits, 1.0), labels) > 0.1


def test_split_is_fixed_and_disjoint():
    fit, held_out = calibration.calibration_split(10000)
    again, _ = calibration.calibration_split(10000)
    assert np.array_equal(fit, again) and len(fit) == len(held_out) == 5000
    assert not set(fit) & set(held_out) and len(set(fit) | set(held_out)) == 10000


@pytest.mark.parametrize("bad", ["hot", -1, 0, 1000, True, {"x": 1}])
def test_bad_temperature_in_model_json_is_named(bad):
    with pytest.raises(CheckpointError, match="calibration.temperature"):
        calibration.temperature_of({"calibration": {"temperature": bad}})
    assert calibration.temperature_of({}) == 1.0


def test_shipped_models_are_calibrated_as_documented():
    """On their validation split when model.json declares one, else (legacy) on the fixed test half."""
    for name in ("digits", "fashion"):
        metadata = checkpoints.read_metadata(versions.resolve_model_dir(name))
        block = metadata["calibration"]
        assert 0.3 < block["temperature"] < 1.0  # label smoothing made them under-confident: T < 1
        assert block["bins"] == 15 and block["ece_after"] < block["ece_before"] / 2
        assert block["after"]["test"]["accuracy"] == block["before"]["test"]["accuracy"]
        if validation.declared(metadata):
            assert block["fit_split"] == "validation" and metadata["validation"]["size"] == 5000
            assert block["fitted_on"].startswith("validation split: 5000") and "validation" in block["after"]
            assert metadata["training"]["train_examples"] == 55000
        else:  # legacy, and labelled so
            assert block["fit_split"] == "test_half" and "fixed half" in block["fitted_on"]
            assert block["fitted_on"].endswith("(legacy: the model has no validation split)")
    digits = checkpoints.read_metadata(versions.resolve_model_dir("digits"))["calibration"]
    assert digits["ece_after"] <= 0.01  # the goal, on the full test set


@pytest.mark.slow
def test_digits_model_applies_its_temperature_on_every_path(digits_model, mnist_test):
    images, labels = mnist_test
    x = to_inputs(images)
    t = digits_model.temperature
    assert t == digits_model.metadata["calibration"]["temperature"] and t < 1.0
    logits = digits_model.logits(x)
    expected = calibration.softmax(logits, t)
    large = np.concatenate([digits_model.predict_proba(x[i : i + 1000]) for i in range(0, len(x), 1000)])
    small = np.concatenate([digits_model.predict_proba(x[i : i + 8]) for i in range(0, 400, 8)])  # inline runner
    assert np.abs(large - expected).max() < 1e-4 and np.abs(small - expected[:400]).max() < 1e-4
    assert np.array_equal(large.argmax(1), logits.argmax(1))  # labels unchanged
    assert calibration.expected_calibration_error(large, labels) <= 0.01
    assert np.median(large.max(1)) > 0.99  # a clean digit now says so


@pytest.mark.slow
def test_calibrate_command_fits_writes_and_the_model_uses_it(tmp_path, data_dir, capsys):
    model_dir = tmp_path / "digits"
    shutil.copytree(versions.resolve_model_dir("digits"), model_dir)
    metadata = checkpoints.read_metadata(model_dir)
    metadata.pop("calibration", None)
    checkpoints.write_metadata(model_dir, metadata)
    uncalibrated = DigitRecognizer.load(model_dir)
    assert uncalibrated.temperature == 1.0

    assert main(["calibrate", str(model_dir), "--datasets", str(data_dir), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert "calibration" not in checkpoints.read_metadata(model_dir)

    assert main(["calibrate", str(model_dir), "--datasets", str(data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    block = checkpoints.read_metadata(model_dir)["calibration"]
    assert report["calibration"]["temperature"] == block["temperature"] < 1.0
    assert block["before"]["temperature"] == 1.0 and block["ece_after"] < block["ece_before"] / 5
    calibrated = DigitRecognizer.load(model_dir)
    assert calibrated.temperature == block["temperature"]
    x = np.full((1, 784), 0.0, np.float32)
    x[0, 300:500] = 1.0
    assert calibrated.predict_proba(x).max() != pytest.approx(uncalibrated.predict_proba(x).max(), abs=1e-6)
