"""The IDX loader on the real files, raw and gzip, with SHA-256 checks and a mirror download."""

from __future__ import annotations

import dataclasses
import gzip
import shutil

import numpy as np
import pytest

from digitrec.errors import DatasetError
from digitrec.learning import datasets


def test_real_mnist_test_split(data_dir):
    images, labels = datasets.load_split("mnist", "test", data_dir)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist()[:3] == [980, 1135, 1032]


def test_real_fashion_train_split(data_dir):
    images, labels = datasets.load_split("fashion", "train", data_dir)
    assert images.shape == (60000, 28, 28)
    assert np.bincount(labels).tolist() == [6000] * 10
    assert datasets.dataset_info("fashion").class_names[9] == "Ankle boot"


def test_raw_idx_files_and_env_var(tmp_path, data_dir, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(data_dir / "mnist" / f"{stem}.gz") as src, open(folder / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path))
    images, labels = datasets.load_split("mnist", "test")
    reference, _ = datasets.load_split("mnist", "test", data_dir)
    np.testing.assert_array_equal(images, reference)
    assert len(labels) == 10000


def test_corrupt_file_fails_its_checksum(tmp_path, data_dir):
    folder = tmp_path / "mnist"
    folder.mkdir()
    raw = bytearray(gzip.decompress((data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] ^= 1  # one flipped bit
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    shutil.copy(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz", folder)
    with pytest.raises(DatasetError, match="SHA-256"):
        datasets.load_split("mnist", "test", tmp_path)


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=datasets.ENV_VAR):
        datasets.load_split("mnist", "test", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        datasets.load_split("cifar", "test", tmp_path)


def test_download_from_a_mirror_verifies_and_places_files(tmp_path, data_dir, monkeypatch):
    # A real urllib fetch from a file:// mirror (no network here); the same code serves https mirrors.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_dir / "mnist" / name, mirror / name)
    bad_mirror = tmp_path / "bad"
    bad_mirror.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (bad_mirror / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 8))
    info = dataclasses.replace(datasets.DATASETS["mnist"], mirrors=(bad_mirror.as_uri() + "/", mirror.as_uri() + "/"))
    monkeypatch.setitem(datasets.DATASETS, "mnist", info)
    target = tmp_path / "cache"
    images, labels = datasets.load_split("mnist", "test", target, download=True)
    assert images.shape == (10000, 28, 28)
    assert sorted(p.name for p in (target / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]  # the bad mirror's files were rejected and no partial file is left behind

    only_bad = dataclasses.replace(info, mirrors=(bad_mirror.as_uri() + "/",))
    monkeypatch.setitem(datasets.DATASETS, "mnist", only_bad)
    with pytest.raises(DatasetError, match="could not download"):
        datasets.load_split("mnist", "test", tmp_path / "other", download=True)
    assert not list((tmp_path / "other" / "mnist").iterdir())


def test_lookup_order_option_then_environment_then_checkout_then_cache(tmp_path, monkeypatch):
    from tests.conftest import REPO

    beside_checkout = REPO.parent / "shared" / "datasets"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "from-env"))
    assert datasets.find_datasets_dir(tmp_path / "given") == tmp_path / "given"
    assert datasets.find_datasets_dir() == tmp_path / "from-env"
    monkeypatch.delenv(datasets.ENV_VAR)
    if beside_checkout.is_dir():
        assert datasets.find_datasets_dir() == beside_checkout
    monkeypatch.setattr(datasets, "CHECKOUT_DATASETS", tmp_path / "no-such-folder")  # a checkout without it
    assert datasets.find_datasets_dir() == tmp_path / "home" / ".cache" / "digitrec" / "datasets"


@pytest.mark.slow
def test_evaluate_finds_the_datasets_beside_the_checkout_without_settings(tmp_path):
    """`digitrec evaluate` run from anywhere, with no option and no $DIGITREC_DATASETS, as the tests and
    docs find the datasets: ../shared/datasets beside the checkout."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    if not (REPO.parent / "shared" / "datasets" / "mnist").is_dir():
        pytest.skip("no ../shared/datasets beside this checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGITREC_", "CASSANDRA_"))}
    env.update({"PYTHONPATH": str(REPO), "HOME": str(tmp_path)})
    command = [sys.executable, "-m", "digitrec", "evaluate", "--json", "--report-dir", str(tmp_path), "--worst", "4"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(0.9965, abs=1e-4)
