"""The validation split (held out of training, equal per class, reproducible from model.json) and the
calibration, calibrate command and fine-tuning that use it; the test-half fallback for models without one.

Two tiny real training runs (500 MNIST images, 1 epoch): one with a 200-image validation split, one
with ``--validation 0`` (the legacy layout). Fine-tuning runs for real on 40 corrected records."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_finetune import _records_with_images

from digitrec.cli import main
from digitrec.errors import CheckpointError, ConfigurationError
from digitrec.learning import datasets, validation
from digitrec.learning.finetune import replay_indices
from digitrec.model import checkpoints, versions
from digitrec.records.sqlite_store import SQLiteStore
from digitrec.service.uploads import UploadStore


@pytest.fixture(scope="module")
def mnist_train(data_dir):
    return datasets.load_split("mnist", "train", data_dir)


def _train(out, data_dir, *extra: str):
    code = main(["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--epochs", "1", "--limit", "500",
                 "--output", str(out), "--quiet", *extra])  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def with_validation(tmp_path_factory, data_dir):
    return _train(tmp_path_factory.mktemp("val") / "digits", data_dir, "--validation", "200", "--validation-seed", "3")


@pytest.fixture(scope="module")
def without_validation(tmp_path_factory, data_dir):
    return _train(tmp_path_factory.mktemp("noval") / "digits", data_dir, "--validation", "0")


def test_split_is_stratified_disjoint_and_reproducible(mnist_train):
    _, labels = mnist_train
    train, val = validation.split_indices(labels, 5000, seed=0)
    assert len(val) == 5000 and len(train) == len(labels) - 5000
    assert not np.intersect1d(train, val).size and np.array_equal(np.union1d(train, val), np.arange(len(labels)))
    assert np.bincount(labels[val], minlength=10).tolist() == [500] * 10  # equal per class
    again_train, again_val = validation.split_indices(labels, 5000, seed=0)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    _, other = validation.split_indices(labels, 5000, seed=1)
    assert not np.array_equal(val, other)
    with pytest.raises(ConfigurationError, match="multiple of 10"):
        validation.split_indices(labels, 5005)


def test_rebuild_checks_the_recorded_digest(mnist_train):
    _, labels = mnist_train
    _, val = validation.split_indices(labels, 1000, seed=5)
    block = validation.describe("mnist", labels, val, 5)
    assert block["per_class"] == 100 and block["size"] == 1000 and block["rule"] == validation.RULE
    assert np.array_equal(validation.rebuild(block, labels)[1], val)
    with pytest.raises(CheckpointError, match="does not match"):
        validation.rebuild({**block, "seed": 6}, labels)


def test_training_holds_the_split_out_and_calibrates_on_it(with_validation, mnist_train):
    _, labels = mnist_train
    meta = checkpoints.read_metadata(with_validation)
    block = meta["validation"]
    assert (block["size"], block["per_class"], block["seed"], block["dataset"]) == (200, 20, 3, "mnist")
    train_index, val_index = validation.rebuild(block, labels)  # reproducible from model.json alone
    assert meta["training"]["train_examples"] == 500 and meta["training"]["validation_examples"] == 200
    assert not np.intersect1d(train_index[:500], val_index).size  # --limit takes from the training part
    assert "validation_accuracy" in meta["training"]["history"][0]
    calibration = meta["calibration"]
    assert calibration["fit_split"] == "validation" and "validation split: 200" in calibration["fitted_on"]
    assert calibration["after"]["validation"]["accuracy"] == calibration["before"]["validation"]["accuracy"]
    assert calibration["after"]["test"]["accuracy"] == pytest.approx(meta["test_accuracy"], abs=2e-4)
    assert calibration["ece_after"] < calibration["ece_before"]  # fitted on 200 images, judged on 10,000


def test_calibrate_command_refits_on_the_validation_split(with_validation, data_dir, capsys):
    stored = checkpoints.read_metadata(with_validation)["calibration"]["temperature"]
    assert main(["calibrate", str(with_validation), "--datasets", str(data_dir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "fitted on: validation split: 200" in out and "judged on: the full mnist test set" in out
    assert main(["calibrate", str(with_validation), "--datasets", str(data_dir), "--json", "--dry-run"]) == 0
    block = json.loads(capsys.readouterr().out)["calibration"]
    # the same raw logits as at the end of training: the same temperature, from T = stored as "before"
    assert block["temperature"] == pytest.approx(stored, rel=1e-3) and block["before"]["temperature"] == stored
    assert main(["calibrate", str(with_validation), "--datasets", str(data_dir), "--json", "--dry-run",
                 "--objective", "ece"]) == 0  # fmt: skip
    by_ece = json.loads(capsys.readouterr().out)["calibration"]
    assert by_ece["method"].startswith("temperature scaling, ECE minimised") and by_ece["fit_split"] == "validation"
    assert by_ece["after"]["validation"]["ece"] <= block["after"]["validation"]["ece"] + 1e-9


def test_model_without_a_split_falls_back_to_the_test_half(without_validation, data_dir, capsys):
    meta = checkpoints.read_metadata(without_validation)
    assert "validation" not in meta and "calibration" not in meta
    assert meta["training"]["validation_examples"] == 0
    assert main(["calibrate", str(without_validation), "--datasets", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "fixed half (seed 12): 5000 images (legacy" in out and "held-out half" in out
    block = checkpoints.read_metadata(without_validation)["calibration"]
    assert block["fit_split"] == "test_half"
    code = main(["calibrate", str(without_validation), "--datasets", str(data_dir), "--objective", "ece"])
    assert code == 2 and "NLL only" in capsys.readouterr().err


def test_replay_leaves_out_the_validation_images(mnist_train):
    _, labels = mnist_train
    _, val = validation.split_indices(labels, 5000, seed=0)
    block = validation.describe("mnist", labels, val, 0)
    pick, held = replay_indices(labels, block, 20000, seed=0)
    assert np.array_equal(held, val) and len(pick) == len(set(pick.tolist())) == 20000
    assert not np.intersect1d(pick, val).size
    legacy, none = replay_indices(labels, None, 20000, seed=0)
    assert none is None and np.array_equal(legacy, np.random.default_rng(0).permutation(len(labels))[:20000])


@pytest.mark.parametrize("model", ["with_validation", "without_validation"])
def test_train_from_records_finetunes_and_calibrates_on_the_parents_split(
    model, request, tmp_path, data_dir, mnist_test, capsys, monkeypatch
):
    """`digitrec train --from-records` (the alias of `digitrec finetune`) on 40 corrections."""
    monkeypatch.delenv("CASSANDRA_CONTACT_POINTS", raising=False)  # the records below are in SQLite
    parent_dir = request.getfixturevalue(model)
    models = tmp_path / "models"
    shutil.copytree(parent_dir, models / "digits", ignore=shutil.ignore_patterns("training_state"))
    parent_meta = checkpoints.read_metadata(models / "digits")
    images, labels = mnist_test
    with SQLiteStore(tmp_path / "records.sqlite3") as store:
        _records_with_images(store, UploadStore(tmp_path, fsync=False), images[:40], labels[:40], True)
    code = main(["train", "--from-records", "--model", "digits", "--data-dir", str(tmp_path),
                 "--models-dir", str(models), "--datasets", str(data_dir), "--min-corrections", "10",
                 "--replay", "300", "--epochs", "1", "--no-promote", "--quiet", "--json"])  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parent"] == parent_meta["version"] and not result["promoted"]
    child = checkpoints.read_metadata(versions.get_version("digits", result["version"], models).path)
    assert child["command"].startswith("digitrec train --from-records --model digits")
    assert child["corrections_used"] + child["corrections_held_out"] == 40
    if model == "with_validation":
        assert result["calibration_fit_split"] == child["calibration"]["fit_split"] == "validation"
        assert child["validation"] == parent_meta["validation"]  # the child never trained on it either
        assert child["finetuning"]["replay_excludes_validation"] is True
        before, after = child["calibration"]["before"], child["calibration"]["after"]
        assert before["validation"]["accuracy"] == after["validation"]["accuracy"]  # T changes no label
    else:
        assert result["calibration_fit_split"] == child["calibration"]["fit_split"] == "test_half"
        assert "validation" not in child and child["finetuning"]["replay_excludes_validation"] is False
        assert "legacy" in child["calibration"]["fitted_on"]
