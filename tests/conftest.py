"""Shared fixtures: the real datasets from ../shared/datasets and the shipped models, loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Exact answers on every CPU: "auto" serves bfloat16 on CPUs with AMX, which moves probabilities by up
# to ~0.02, so tests (and the servers they start, which inherit this) compare in float32; the bfloat16
# path has its own tests that ask for it by name.
os.environ.setdefault("DIGITREC_PRECISION", "float32")


def datasets_dir() -> Path | None:
    """Where the commands look ($DIGITREC_DATASETS, else ../shared/datasets beside the checkout, which CI
    provides), when MNIST is there."""
    from digitrec.learning.datasets import find_datasets_dir

    found = find_datasets_dir()
    return found if (found / "mnist").is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = datasets_dir()
    if found is None:
        pytest.skip("MNIST/Fashion-MNIST not found: set DIGITREC_DATASETS or put shared/datasets beside the repo")
    return found


@pytest.fixture(scope="session")
def mnist_test(data_dir: Path):
    from digitrec.learning.datasets import load_split

    return load_split("mnist", "test", data_dir)


@pytest.fixture(scope="session")
def fashion_test(data_dir: Path):
    from digitrec.learning.datasets import load_split

    return load_split("fashion", "test", data_dir)


@pytest.fixture(scope="session")
def digits_model():
    from digitrec.model.recognizer import DigitRecognizer

    return DigitRecognizer.load("digits")


@pytest.fixture(scope="session")
def fashion_model():
    from digitrec.model.recognizer import DigitRecognizer

    return DigitRecognizer.load("fashion")
