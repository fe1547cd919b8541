"""Fine-tuning on corrections: the gate, the data it reads (SQLite and Cassandra, store or upload files),
the too-few message, and the whole loop through a real HTTP server (slow)."""

from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np
import pytest
from finetune_loop import run_loop, thick_pen_png
from finetune_styles import STYLES, continental, drawn_ink
from records_helpers import cassandra_env_config, new_keyspace_name

from digitrec.cli import main
from digitrec.learning.augment import DIGITS_AUGMENT
from digitrec.learning.finetune import (
    FinetuneConfig,
    correction_weights,
    gate,
    is_held_out,
    load_corrections,
    refusal_sizes,
    shipped_ancestor,
    train_on,
    train_steps,
)
from digitrec.model import checkpoints, versions
from digitrec.records.record import PredictionRecord
from digitrec.records.sqlite_store import SQLiteStore
from digitrec.service.uploads import UploadStore

HAVE_CASSANDRA = bool(os.environ.get("CASSANDRA_CONTACT_POINTS", "").strip())
NEEDS_CASSANDRA = pytest.mark.skipif(
    not HAVE_CASSANDRA, reason="CASSANDRA_CONTACT_POINTS is not set: no Cassandra server to test against"
)


def test_gate_promotes_only_a_better_version_that_keeps_the_test_set():
    parent = {"holdout_accuracy": 0.70, "test_accuracy": 0.9965}
    ok, reasons = gate(parent, {"holdout_accuracy": 0.90, "test_accuracy": 0.9961}, 0.0005)
    assert ok and "held-out corrections: 90.00% > parent 70.00%" in reasons[0]
    ok, reasons = gate(parent, {"holdout_accuracy": 0.70, "test_accuracy": 0.9970}, 0.0005)
    assert not ok and reasons[0].startswith("not better on the held-out corrections: 70.00% vs parent 70.00%")
    ok, reasons = gate(parent, {"holdout_accuracy": 0.95, "test_accuracy": 0.9959}, 0.0005)
    assert not ok and "loses 0.06 points on the test set" in reasons[1]


def test_the_teacher_is_the_first_version_of_the_lineage(tmp_path):
    """Fine-tuned versions point to their parents; the walk stops at the version trained from scratch,
    or at the last version still present when an ancestor was deleted."""
    for version, parent in (("a", "2026-11-21"), ("b", "a"), ("c", "b"), ("x", "gone"), ("y", "x")):
        folder = tmp_path / "digits" / version
        folder.mkdir(parents=True)
        (folder / "model.index").write_bytes(b"")
        checkpoints.write_metadata(folder, {"name": "digits", "version": version, "parent": parent})
    c = versions.get_version("digits", "c", tmp_path)
    assert shipped_ancestor("digits", c, tmp_path).id == "2026-11-21"
    assert shipped_ancestor("digits", versions.get_version("digits", "y", tmp_path), tmp_path).id == "x"
    shipped = versions.get_version("digits", "2026-11-21", tmp_path)
    assert shipped_ancestor("digits", shipped, tmp_path).id == "2026-11-21"


def test_steps_or_passes_over_the_replay():
    assert train_steps(60000, FinetuneConfig()) == FinetuneConfig().steps
    assert train_steps(60000, FinetuneConfig(epochs=1)) == 723  # 83 replayed images per batch of 128
    assert train_steps(60000, FinetuneConfig(epochs=1, correction_share=0.25)) == 625  # 96 per batch
    assert train_steps(12000, FinetuneConfig(epochs=2, steps=7, correction_share=0.25)) == 250


def test_frozen_batch_norm_keeps_the_parents_statistics(mnist_test, digits_model):
    """Training moves the weights but not the batch-norm statistics every input is normalised with;
    unfrozen, the same steps change them (so the check can fail)."""
    images, labels = mnist_test
    x = images[:256].reshape(-1, 784).astype(np.float32) / 255.0
    y = labels[:256].astype(np.int32)
    parent = digits_model._network
    moving = [v.numpy() for v in parent.variables if "moving" in v.name]
    for frozen in (True, False):
        net = type(parent)(parent.spec)
        for src, dst in zip(parent.variables, net.variables):
            dst.assign(src)
        config = FinetuneConfig(steps=3, ema_decay=0.0, freeze_batch_norm=frozen, progress=False, learning_rate=1e-3)
        child = train_on(net, x[:64], y[:64], x, y, config, DIGITS_AUGMENT, 0.05, teacher=parent)
        after = [v.numpy() for v in child.variables if "moving" in v.name]
        same = all(np.array_equal(a, b) for a, b in zip(moving, after))
        assert same == frozen
        assert not np.array_equal(child.dense_w.numpy(), parent.dense_w.numpy())


def test_the_anchor_keeps_the_weights_near_the_parents(mnist_test, digits_model):
    """L2-SP: the same steps on the same batches move the weights less from the parent's with the anchor
    than without it."""
    images, labels = mnist_test
    x = images[:256].reshape(-1, 784).astype(np.float32) / 255.0
    y = labels[:256].astype(np.int32)
    parent = digits_model._network
    distance = {}
    for anchor in (0.0, 100.0):
        net = type(parent)(parent.spec)
        for src, dst in zip(parent.variables, net.variables):
            dst.assign(src)
        config = FinetuneConfig(steps=20, ema_decay=0.0, anchor=anchor, progress=False, learning_rate=1e-3)
        child = train_on(net, x[:64], (y[:64] + 1) % 10, x, y, config, DIGITS_AUGMENT, 0.05, teacher=parent)
        distance[anchor] = sum(
            float(np.sum((a.numpy() - b.numpy()) ** 2))
            for a, b in zip(child.trainable_variables, parent.trainable_variables)
        )
    assert 0 < distance[100.0] < 0.5 * distance[0.0]


def test_corrections_the_parent_gets_wrong_are_drawn_more_often(mnist_test, digits_model):
    """With ``focus``, a correction the parent reads wrong (a relabelled test digit) is drawn more often
    than one it reads right; the uniform part keeps every correction drawn; without focus all are equal."""
    images, labels = mnist_test
    x = images[:200].reshape(-1, 784).astype(np.float32) / 255.0
    y = labels[:200].astype(np.int32)
    y[:50] = (y[:50] + 1) % 10  # the parent reads these 50 as their true digit: wrong for their new label
    net = digits_model._network
    flat = correction_weights(net, x, y, 0.0)
    assert np.allclose(flat, 1 / 200)
    weights = correction_weights(net, x, y, 0.5)
    assert abs(weights.sum() - 1) < 1e-9 and weights.min() >= 0.5 / 200
    assert weights[:50].sum() > 0.5  # 25 % of the corrections, more than half of the draws
    assert np.median(weights[:50]) > 3 * np.median(weights[50:])


def test_a_fine_tuned_refusal_head_learns_from_a_share_of_the_images():
    half, full = refusal_sizes(0.5), refusal_sizes(1.0)
    assert half.own_raw * 2 == full.own_raw and half.synthetic_per_family * 2 == full.synthetic_per_family
    assert (half.epochs, half.test_per_family, half.other_test) == (full.epochs, full.test_per_family, full.other_test)


def test_holdout_split_follows_the_image_content():
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2000)]
    held = [is_held_out(d) for d in digests]
    assert 0.15 < np.mean(held) < 0.25
    assert held == [is_held_out(d) for d in digests]  # fixed


def _records_with_images(store, uploads: UploadStore, digits: np.ndarray, labels: np.ndarray, in_store: bool):
    """Predictions as the service would record them (image in the store, or only as an upload file),
    each corrected to its true label."""
    for digit, label in zip(digits, labels):
        png = thick_pen_png(digit)
        record = PredictionRecord.new(
            model_name="digits", model_version="2026-11-21", label=(int(label) + 1) % 10, class_name="x",
            confidence=0.9, probabilities=[0.1] * 10, source="upload",
        )  # fmt: skip
        path, digest = uploads.save(record.request_id, record.request_time, png)
        record = PredictionRecord(**{**record.__dict__, "image_path": path, "image_sha256": digest})
        store.add(record, png if in_store else None)
        assert store.set_correction(record.request_id, int(label))
    other = PredictionRecord.new(
        model_name="fashion", model_version="x", label=1, class_name="Trouser", confidence=0.9,
        probabilities=[0.1] * 10, source="api",
    )  # fmt: skip
    store.add(other)
    store.set_correction(other.request_id, 3)  # another model's correction: not used


def _check_loaded(store, tmp_path, digits_model, digits, labels, expect_store: bool):
    loaded = load_corrections(store, "digits", lambda b: digits_model.prepare(b).tensor, tmp_path, 20)
    assert loaded.total == len(labels) and not loaded.skipped
    assert (loaded.from_store, loaded.from_files) == ((len(labels), 0) if expect_store else (0, len(labels)))
    # preprocessed exactly as at prediction time
    first = digits_model.prepare(thick_pen_png(digits[0])).tensor.reshape(784)
    both = np.concatenate([loaded.x_train, loaded.x_holdout])
    assert np.abs(both - first).sum(axis=1).min() < 1e-6
    assert sorted(np.concatenate([loaded.y_train, loaded.y_holdout]).tolist()) == sorted(labels.tolist())


@pytest.mark.parametrize("in_store", [True, False], ids=["image-in-store", "upload-file-only"])
def test_corrections_are_read_from_sqlite(tmp_path, mnist_test, digits_model, in_store):
    images, labels = mnist_test
    with SQLiteStore(tmp_path / "records.sqlite3") as store:
        _records_with_images(store, UploadStore(tmp_path, fsync=False), images[:12], labels[:12], in_store)
        _check_loaded(store, tmp_path, digits_model, images[:12], labels[:12], expect_store=in_store)


@pytest.mark.cassandra
@NEEDS_CASSANDRA
def test_corrections_are_read_from_cassandra(tmp_path, mnist_test, digits_model):
    from digitrec.records.cassandra_store import cassandraModule

    images, labels = mnist_test
    store = cassandraModule(config=cassandra_env_config(new_keyspace_name()))
    store.create_keyspace()
    try:
        store.init_schema()
        _records_with_images(store, UploadStore(tmp_path, fsync=False), images[:8], labels[:8], in_store=True)
        _check_loaded(store, tmp_path, digits_model, images[:8], labels[:8], expect_store=True)
    finally:
        store.drop_keyspace()
        store.close()


def test_too_few_corrections_is_a_clear_message(tmp_path, data_dir, mnist_test, capsys, monkeypatch):
    monkeypatch.delenv("CASSANDRA_CONTACT_POINTS", raising=False)  # the records below are in SQLite
    images, labels = mnist_test
    with SQLiteStore(tmp_path / "records.sqlite3") as store:
        _records_with_images(store, UploadStore(tmp_path, fsync=False), images[:3], labels[:3], True)
    code = main(["finetune", "digits", "--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "models"),
                 "--datasets", str(data_dir), "--min-corrections", "10"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "only 3 corrected record(s)" in error and "at least 10 needed" in error
    assert versions.list_versions("digits", tmp_path / "models")[-1].id == "2026-11-21"  # nothing written


@pytest.mark.slow
def test_the_loop_through_http_cuts_errors_on_a_misread_style(tmp_path, data_dir):
    """300 dotted digits (from MNIST training images) predicted and corrected over HTTP, fine-tuned with
    the defaults (the shipped model's probabilities and the labels on replayed MNIST images, the parent's
    batch-norm statistics), promoted by the gate and picked up by the running service."""
    result = run_loop(tmp_path, data_dir, "dotted", images=300, fresh=300, log=lambda m: None)
    f = result["finetune"]
    assert result["sent"] == result["corrected"] == 300 and result["misread"] > 150  # the style is misread
    assert result["style_errors_before"] > 0.5
    assert result["style_errors_after"] <= 0.5 * result["style_errors_before"]  # the style's errors halve
    # the gate's decision follows its two rules
    better = f["holdout_accuracy"] > f["parent_holdout_accuracy"]
    keeps_test = f["parent_test_accuracy"] - f["test_accuracy"] <= 0.0005
    assert better  # trained on the style, it reads the held-out corrections of that style better
    assert f["gate_passed"] == f["promoted"] == keeps_test
    info = versions.promoted_version("digits", tmp_path / "models")
    if f["promoted"]:  # the running service switched to it (no restart) and reads the style better
        assert info.id == f["version"] and info.parent == "2026-11-21"
        assert result["served_http_accuracy_sample"] > 1 - result["style_errors_before"]
    else:
        assert info.id == "2026-11-21" and "loses" in f["reasons"][1]
    metadata = checkpoints.read_metadata(versions.get_version("digits", f["version"], tmp_path / "models").path)
    assert metadata["parent"] == "2026-11-21" and metadata["corrections_used"] == f["corrections_train"] > 200
    assert metadata["evaluation"]["gate_passed"] == f["gate_passed"]
    method = metadata["finetuning"]
    defaults = FinetuneConfig()
    assert method["distill"] == defaults.distill and method["anchor"] == defaults.anchor
    assert method["replayed_images"] == 60000 and method["steps"] == defaults.steps
    assert method["teacher"] == "2026-11-21" and method["freeze_batch_norm"] and method["replay_labels"] == 1.0
    assert method["correction_augmentation"]["shear"] > method["augmentation"]["shear"]
    assert 0.3 < metadata["calibration"]["temperature"] < 1.0


@pytest.mark.parametrize("style", sorted(STYLES))
def test_styles_are_uploads_the_service_reads(style, mnist_test, digits_model):
    images, labels = mnist_test
    chosen = STYLES[style].pick(labels, 20, np.random.default_rng(0))
    assert set(labels[chosen]) <= set(STYLES[style].digits)
    for i in chosen[:5]:
        png = STYLES[style].png(images[i], labels[i])
        decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert decoded.shape == (152, 152) and decoded.min() == 0 and decoded.max() == 255
        assert digits_model.prepare(png).preview.max() == 255  # the preprocessing finds the digit


def test_continental_flags_ones_and_bars_sevens_only(mnist_test):
    images, labels = mnist_test
    for digit, grows in ((1, True), (7, True), (3, False)):
        i = int(np.flatnonzero(labels == digit)[0])
        plain, styled = drawn_ink(images[i]), continental(images[i], digit)
        assert (np.count_nonzero(styled) > 1.15 * np.count_nonzero(plain)) == grows
        assert np.count_nonzero(plain & ~styled) == 0  # only ink is added


def test_thick_pen_style_is_a_readable_rendering(mnist_test):
    images, _ = mnist_test
    decoded = cv2.imdecode(np.frombuffer(thick_pen_png(images[0]), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded.shape == (152, 152) and decoded.min() == 0 and decoded.max() == 255
