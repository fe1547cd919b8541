"""A tiny real training run (2,000 images, 1 epoch): checkpoint round trip, model.json, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitrec.cli import main
from digitrec.learning.training import STATE_DIR
from digitrec.model import checkpoints
from digitrec.model.inputs import to_inputs
from digitrec.model.recognizer import DigitRecognizer


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("smoke") / "digits-smoke"
    code = main(["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--epochs", "1",
                 "--limit", "2000", "--output", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    return out


def test_writes_checkpoint_metadata_and_curve(trained):
    assert checkpoints.is_model_dir(trained)
    assert (trained / "training_curve.png").stat().st_size > 1000
    meta = json.loads((trained / "model.json").read_text())
    for key in ("architecture", "params", "class_names", "dataset", "input", "test_accuracy",
                "tensorflow_version", "date", "command", "training"):  # fmt: skip
        assert key in meta, key
    assert meta["training"]["train_examples"] == 2000 and meta["training"]["epochs"] == 1
    assert meta["command"].startswith("digitrec train --dataset mnist")
    # 16 steps on 2,000 images already learn a lot (48-53 % depending on which 2,000; chance is 10 %)
    assert 0.3 < meta["test_accuracy"] <= 1.0
    assert meta["validation"]["size"] == 5000 and meta["calibration"]["fit_split"] == "validation"  # the default


def test_checkpoint_round_trip_reproduces_the_reported_accuracy(trained, mnist_test):
    images, labels = mnist_test
    # training measures in float32; on a CPU with AMX, "auto" would pick bfloat16 and move a few of the
    # barely-trained model's borderline answers
    recognizer = DigitRecognizer.load(trained, precision="float32")
    accuracy = float(np.mean(recognizer.predict_proba(to_inputs(images)).argmax(1) == labels))
    meta = checkpoints.read_metadata(trained)
    assert accuracy == pytest.approx(meta["test_accuracy"], abs=1e-4)


def test_resume_continues_from_the_saved_state(trained, data_dir, capsys):
    before = checkpoints.read_metadata(trained)
    code = main(["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--epochs", "2",
                 "--limit", "2000", "--output", str(trained), "--resume", "--quiet"])  # fmt: skip
    assert code == 0
    after = checkpoints.read_metadata(trained)
    history = after["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == before["training"]["history"][0]  # epoch 1 was not redone
    assert (trained / STATE_DIR).is_dir()


def test_resume_without_anything_to_resume_is_an_error(tmp_path, data_dir, capsys):
    code = main(["train", "--data-dir", str(data_dir), "--epochs", "1", "--limit", "100",
                 "--output", str(tmp_path / "empty"), "--resume", "--quiet"])  # fmt: skip
    assert code == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_a_staged_model_dir_replaces_the_old_one_whole_or_not_at_all(tmp_path):
    out = tmp_path / "models" / "sequence"
    with checkpoints.staged_model_dir(out) as staging:
        checkpoints.write_metadata(staging, {"version": "1"})
    assert checkpoints.read_metadata(out) == {"version": "1"}
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)  # readable by the service's user
    with pytest.raises(RuntimeError), checkpoints.staged_model_dir(out) as staging:
        checkpoints.write_metadata(staging, {"version": "2"})
        raise RuntimeError("training failed half-way")
    assert checkpoints.read_metadata(out) == {"version": "1"}
    assert [p.name for p in out.parent.iterdir()] == ["sequence"]  # no staging folder left behind
    with checkpoints.staged_model_dir(out) as staging:
        checkpoints.write_metadata(staging, {"version": "3"})
    assert checkpoints.read_metadata(out) == {"version": "3"}
