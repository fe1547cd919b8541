"""Model versions on disk: layout, promotion pointer, rollback, merging with the shipped models."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from digitrec.errors import ModelNotFoundError
from digitrec.model import checkpoints, versions
from tests.model_versions import copy_flat, make_version
from tests.service_helpers import require_models


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.delenv(checkpoints.MODELS_ENV_VAR, raising=False)
    root = require_models()
    return root, json.loads((root / "digits" / "model.json").read_text())["version"]


def test_flat_folder_is_one_serving_version(tmp_path, shipped):
    root, shipped_id = shipped
    copy_flat(root, tmp_path)
    found = versions.list_versions("digits", tmp_path)
    assert [v.id for v in found] == [shipped_id]
    (only,) = found
    assert only.flat and only.promoted and only.path == tmp_path / "digits" and not only.shipped
    assert only.to_json()["test_accuracy"] == only.metadata["test_accuracy"]
    assert versions.promoted_version("digits", tmp_path).path == tmp_path / "digits"


def test_promote_and_rollback_move_the_pointer(tmp_path, shipped):
    root, shipped_id = shipped
    copy_flat(root, tmp_path)
    make_version(root, tmp_path, "v2", metadata={"parent": shipped_id, "corrections_used": 12})
    make_version(root, tmp_path, "v3")
    listed = {v.id: v for v in versions.list_versions("digits", tmp_path)}
    assert set(listed) == {shipped_id, "v2", "v3"}
    assert listed[shipped_id].promoted, "without a pointer the flat model keeps serving"
    assert listed["v2"].parent == shipped_id and listed["v2"].evaluation["corrections_used"] == 12

    versions.promote("digits", "v2", tmp_path)
    assert versions.promoted_version("digits", tmp_path).id == "v2"
    assert versions.resolve_model_dir("digits", tmp_path) == tmp_path / "digits" / "v2"
    versions.promote("digits", "v3", tmp_path)
    pointer = json.loads((tmp_path / "digits" / versions.POINTER_FILE).read_text())
    assert pointer["version"] == "v3" and [h["version"] for h in pointer["history"]] == [shipped_id, "v2"]
    served = versions.promoted_version("digits", tmp_path)
    assert served.promoted_at == pointer["promoted_at"]

    assert versions.rollback("digits", tmp_path).id == "v2"
    assert versions.promoted_version("digits", tmp_path).id == "v2"
    assert versions.rollback("digits", tmp_path).id == shipped_id
    assert versions.promoted_version("digits", tmp_path).path == tmp_path / "digits"
    with pytest.raises(versions.PromotionError, match="no earlier version"):
        versions.rollback("digits", tmp_path)


def test_rollback_skips_deleted_versions(tmp_path, shipped):
    root, shipped_id = shipped
    copy_flat(root, tmp_path)
    make_version(root, tmp_path, "v2")
    make_version(root, tmp_path, "v3")
    versions.promote("digits", "v2", tmp_path)
    versions.promote("digits", "v3", tmp_path)
    for f in (tmp_path / "digits" / "v2").iterdir():
        f.unlink()
    assert versions.rollback("digits", tmp_path).id == shipped_id


def test_unknown_version_names_the_available_ones(tmp_path, shipped):
    root, shipped_id = shipped
    copy_flat(root, tmp_path)
    with pytest.raises(versions.VersionNotFoundError, match=f"available: {shipped_id}") as caught:
        versions.promote("digits", "nope", tmp_path)
    assert caught.value.available == [shipped_id]
    with pytest.raises(ModelNotFoundError, match="no model named 'nothing'"):
        versions.promoted_version("nothing", tmp_path)


def test_shipped_version_stays_visible_beside_a_writable_dir(tmp_path, shipped):
    """The read-only shipped model is never copied: versions merge across the writable and shipped roots."""
    root, shipped_id = shipped
    folder = versions.new_version_dir("digits", tmp_path)
    assert folder.parent == tmp_path / "digits"
    ids = [v.id for v in versions.list_versions("digits", tmp_path)]
    assert ids == [shipped_id], "an empty (unfinished) version folder is not a version"
    # the pointer was pinned to the shipped version before the folder was made
    assert json.loads((tmp_path / "digits" / versions.POINTER_FILE).read_text())["version"] == shipped_id

    make_version(root, tmp_path, folder.name)
    listed = {v.id: v for v in versions.list_versions("digits", tmp_path)}
    assert listed[shipped_id].shipped and listed[shipped_id].promoted, "writing a version does not promote it"
    assert not listed[folder.name].shipped and not listed[folder.name].promoted
    versions.promote("digits", folder.name, tmp_path)
    assert versions.rollback("digits", tmp_path).id == shipped_id
    assert versions.promoted_version("digits", tmp_path).path == root / "digits"


def test_new_version_ids_are_fresh_and_sort_after_the_shipped_ones(tmp_path, shipped):
    root, shipped_id = shipped
    first = versions.new_version_dir("digits", tmp_path)
    make_version(root, tmp_path, first.name)
    second = versions.new_version_dir("digits", tmp_path)
    assert first != second and second.is_dir()
    assert sorted([shipped_id, first.name]) == [shipped_id, first.name]
    assert first.name < second.name


def test_crash_mid_promotion_leaves_the_old_version_serving(tmp_path, shipped, monkeypatch):
    root, shipped_id = shipped
    copy_flat(root, tmp_path)
    make_version(root, tmp_path, "v2")
    versions.promote("digits", "v2", tmp_path)
    make_version(root, tmp_path, "v3")
    before = (tmp_path / "digits" / versions.POINTER_FILE).read_bytes()

    def crash(src, dst):  # a fault we cannot cause for real: the process dies before the rename
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(versions.os, "replace", crash)
    with pytest.raises(versions.PromotionError):
        versions.promote("digits", "v3", tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "digits" / versions.POINTER_FILE).read_bytes() == before
    assert versions.promoted_version("digits", tmp_path).id == "v2"
    assert [p.name for p in (tmp_path / "digits").iterdir() if p.name.endswith(".tmp")] == []


def test_corrupt_pointer_falls_back_to_the_default(tmp_path, shipped):
    root, shipped_id = shipped
    copy_flat(root, tmp_path)
    make_version(root, tmp_path, "v2")
    (tmp_path / "digits" / versions.POINTER_FILE).write_text("{half a fil")
    assert versions.promoted_version("digits", tmp_path).id == shipped_id


def test_recognizer_loads_the_promoted_version(tmp_path, shipped):
    from digitrec.model.recognizer import DigitRecognizer

    root, shipped_id = shipped
    copy_flat(root, tmp_path)
    make_version(root, tmp_path, "biased", logit_shift={3: 25.0})
    x = np.zeros((1, 784), np.float32)
    assert DigitRecognizer.load("digits", models_dir=tmp_path).version == shipped_id
    versions.promote("digits", "biased", tmp_path)
    biased = DigitRecognizer.load("digits", models_dir=tmp_path)
    assert biased.version == "biased"
    assert int(np.argmax(biased.predict_proba(x))) == 3 and biased.predict_proba(x)[0, 3] > 0.99


def test_pointer_write_fsyncs_and_replaces(tmp_path):
    target = tmp_path / "m" / "p.json"
    versions.write_json_atomically(target, {"version": "a"})
    versions.write_json_atomically(target, {"version": "b"})
    assert json.loads(target.read_text()) == {"version": "b"}
    assert os.listdir(target.parent) == ["p.json"]


def test_concurrent_promotions_lose_no_history(tmp_path, shipped):
    """The CLI and a fine-tuning run may promote at the same moment: the pointer file is locked."""
    import threading

    root, shipped_id = shipped
    copy_flat(root, tmp_path)
    ids = [f"c{i}" for i in range(6)]
    for version in ids:
        make_version(root, tmp_path, version)
    threads = [threading.Thread(target=versions.promote, args=("digits", v, tmp_path)) for v in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    pointer = json.loads((tmp_path / "digits" / versions.POINTER_FILE).read_text())
    seen = [h["version"] for h in pointer["history"]] + [pointer["version"]]
    assert sorted(seen) == sorted([shipped_id, *ids]), seen
