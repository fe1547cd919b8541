"""MNIST and Fashion-MNIST from IDX files (gzip or raw), from a local directory or an official mirror.

The directory holds ``mnist/`` and ``fashion-mnist/`` folders with the four standard file names; every
command looks it up the same way (``find_datasets_dir``, named in each command's ``--help``). Integrity
is checked with SHA-256 of the *decompressed* IDX bytes: that value is the same for the publisher's gzip
files and for re-compressed copies (such as Debian's), so one table serves every source.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from digitrec.errors import DatasetError
from digitrec.model.classes import FASHION_CLASSES, MNIST_CLASSES

ENV_VAR = "DIGITREC_DATASETS"
# A checkout beside a shared datasets folder (how CI and a team machine lay things out): <parent>/shared/datasets
CHECKOUT_DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
CACHE_DIR = Path("~/.cache/digitrec/datasets")
LOOKUP_HELP = (
    "folder holding mnist/ and fashion-mnist/; looked up in this order: this option, $DIGITREC_DATASETS, "
    "../shared/datasets beside the checkout, ~/.cache/digitrec/datasets (where --download writes otherwise)"
)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    folder: str
    class_names: list[str]
    mirrors: tuple[str, ...]
    sha256: dict[str, str]  # decompressed IDX file name -> SHA-256


DATASETS = {
    "mnist": DatasetInfo(
        name="mnist",
        folder="mnist",
        class_names=MNIST_CLASSES,
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
    ),
    "fashion": DatasetInfo(
        name="fashion",
        folder="fashion-mnist",
        class_names=FASHION_CLASSES,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    ),
}

SPLITS = {"train": "train", "test": "t10k"}


def dataset_info(name: str) -> DatasetInfo:
    key = {"fashion-mnist": "fashion"}.get(name, name)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[key]


def find_datasets_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The datasets folder, in the order ``LOOKUP_HELP`` tells users: ``explicit`` (the command's option),
    ``$DIGITREC_DATASETS``, ``../shared/datasets`` beside the checkout when it exists, else the cache."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    if CHECKOUT_DATASETS.is_dir():
        return CHECKOUT_DATASETS
    return CACHE_DIR.expanduser()


def _read_idx_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX (unsigned-byte) content into an array of the declared shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{source}: not an unsigned-byte IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DatasetError(f"{source}: {len(data)} bytes, header declares {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem, folder / stem.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    return None


def _download(info: DatasetInfo, stem: str, folder: Path) -> Path:
    """Fetch ``stem.gz`` from the first mirror that answers, verify it, then move it into place."""
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in info.mirrors:
        url = f"{mirror}{stem}.gz"
        try:
            with (
                urllib.request.urlopen(url, timeout=60) as response,
                tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as tmp,
            ):
                shutil.copyfileobj(response, tmp)
            _verify(Path(tmp.name), info, stem)
        except (OSError, DatasetError) as exc:
            errors.append(f"{url}: {exc}")
            if "tmp" in locals():
                Path(tmp.name).unlink(missing_ok=True)
            continue
        target = folder / f"{stem}.gz"
        os.replace(tmp.name, target)
        return target
    raise DatasetError(f"could not download {stem}: " + "; ".join(errors))


def _verify(path: Path, info: DatasetInfo, stem: str) -> bytes:
    data = _read_idx_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != info.sha256[stem]:
        raise DatasetError(f"{path}: SHA-256 of the IDX content is {digest}, expected {info.sha256[stem]}")
    return data


def load_split(
    name: str, split: str, data_dir: str | Path | None = None, download: bool = False, verify: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) uint8 of ``split`` ("train" or "test")."""
    info = dataset_info(name)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose train or test")
    root = find_datasets_dir(data_dir)
    folder = root / info.folder
    arrays = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{SPLITS[split]}-{kind}"
        path = _find_file(folder, stem)
        if path is None:
            if not download:
                raise DatasetError(
                    f"{info.name} {split} file {stem}(.gz) not found in {folder}; point the command's option "
                    f"or ${ENV_VAR} at a folder holding {info.folder}/, or pass --download"
                )
            path = _download(info, stem, folder)
        data = _verify(path, info, stem) if verify else _read_idx_bytes(path)
        arrays.append(parse_idx(data, str(path)))
    images, labels = arrays
    if len(images) != len(labels):
        raise DatasetError(f"{info.name} {split}: {len(images)} images but {len(labels)} labels")
    return images, labels
