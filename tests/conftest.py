"""Shared fixtures: the real datasets from ../shared/datasets and the shipped models, loaded once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def datasets_dir() -> Path | None:
    """$DIGITREC_DATASETS, else ../shared/datasets beside the checkout (what CI provides)."""
    for candidate in (os.environ.get("DIGITREC_DATASETS"), REPO.parent / "shared" / "datasets"):
        if candidate and (Path(candidate) / "mnist").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = datasets_dir()
    if found is None:
        pytest.skip("MNIST/Fashion-MNIST not found: set DIGITREC_DATASETS or put shared/datasets beside the repo")
    return found


@pytest.fixture(scope="session")
def mnist_test(data_dir: Path):
    from digitrec.datasets import load_split

    return load_split("mnist", "test", data_dir)


@pytest.fixture(scope="session")
def fashion_test(data_dir: Path):
    from digitrec.datasets import load_split

    return load_split("fashion", "test", data_dir)


@pytest.fixture(scope="session")
def digits_model():
    from digitrec.recognizer import DigitRecognizer

    return DigitRecognizer.load("digits")


@pytest.fixture(scope="session")
def fashion_model():
    from digitrec.recognizer import DigitRecognizer

    return DigitRecognizer.load("fashion")
