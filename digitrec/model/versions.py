"""Model versions: which checkpoints a model name has, which one serves, and promotion / rollback.

Layout (like TF Serving's base paths), per root folder of models::

    <root>/<name>/model.json + model.*             a flat model: one version, id = model.json "version"
    <root>/<name>/<version>/model.json + model.*    a versioned model (any number of these)
    <root>/<name>/promoted.json                     which version serves (written by ``promote``)

A folder may hold both: the flat model stays a version beside the ones written into sub-folders.

Roots are searched in the order of ``resolve_model_dir``: the writable models dir (the
service's ``<data dir>/trained_models``), ``$DIGITREC_MODELS_DIR``, then the shipped models (the checkout's
``data/trained_models`` or the installed copy under ``share/``). The versions of a name are the union over
all roots (an id found in an earlier root hides the same id further down), so when the shipped model is
read-only and a fine-tuned version lands in the writable dir, the shipped version is still listed, can
still be asked for, and is what ``rollback`` returns to. Nothing is ever copied out of the shipped folder.

Which version serves: the one named by the first ``promoted.json`` found (writable root first). Without a
pointer it is the flat model of the first root that has one (what the service always served), else the
newest version id. ``new_version_dir`` writes that choice into a pointer before it creates a new folder,
so writing a version never changes what serves; only ``promote`` / ``rollback`` do.

The pointer is replaced atomically (temporary file, fsync, ``os.replace``, fsync of the folder): after a
crash mid-promotion the old pointer, hence the old version, is what a restarted service reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from digitrec.errors import DigitrecError, ModelNotFoundError
from digitrec.model import checkpoints

POINTER_FILE = "promoted.json"
LOCK_FILE = ".promoted.lock"
VERSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HISTORY_LIMIT = 50
# model.json keys that describe how good a version is (shown by `models list` and /api/v1/models)
EVALUATION_KEYS = ("test_accuracy", "test_examples", "evaluation", "corrections_used", "temperature")


class VersionNotFoundError(ModelNotFoundError):
    """A version id that the model does not have; ``available`` lists the ones it has."""

    def __init__(self, name: str, version: str, available: list[str]) -> None:
        listed = ", ".join(available) or "none"
        super().__init__(f"model {name!r} has no version {version!r}; available: {listed}")
        self.name = name
        self.version = version
        self.available = available


class PromotionError(DigitrecError):
    """Promotion or rollback is not possible (nothing to roll back to, read-only folder, ...)."""


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One version of a model as found on disk."""

    name: str
    id: str
    path: Path
    flat: bool  # the model.json sits directly in <root>/<name> (today's layout)
    shipped: bool  # found in the read-only models that ship with the package
    promoted: bool = False  # this is the version that serves
    promoted_at: str | None = None  # when it was last promoted (None: never explicitly promoted)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def parent(self) -> str | None:
        parent = self.metadata.get("parent")
        return str(parent) if parent else None

    @property
    def evaluation(self) -> dict[str, Any]:
        figures = {key: self.metadata[key] for key in EVALUATION_KEYS if key in self.metadata}
        calibration = self.metadata.get("calibration")
        if isinstance(calibration, dict):  # digitrec.model.calibration's block: its temperature and test ECE
            figures.setdefault("temperature", calibration.get("temperature"))
            figures["ece"] = calibration.get("ece_after")
        return figures

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.id,
            "promoted": self.promoted,
            "promoted_at": self.promoted_at,
            "parent": self.parent,
            "created": self.metadata.get("date"),
            "dataset": self.metadata.get("dataset"),
            "shipped": self.shipped,
            "path": str(self.path),
            **self.evaluation,
        }


# ---- where to look ------------------------------------------------------------------------------


def model_roots(models_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders holding models, in lookup order, without duplicates."""
    roots: list[Path] = []
    seen: set[Path] = set()
    for root in (models_dir, os.environ.get(checkpoints.MODELS_ENV_VAR), checkpoints.shipped_models_dir()):
        if not root:
            continue
        path = Path(root)
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            roots.append(path)
    return roots


def writable_root(models_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where new versions and the pointer go: the first root (the writable models dir when given)."""
    return model_roots(models_dir)[0]


def _is_shipped(root: Path) -> bool:
    return root.resolve() == checkpoints.shipped_models_dir().resolve()


def _check_name(name: str) -> None:
    if not MODEL_NAME.match(name):
        raise ModelNotFoundError(f"{name!r} is not a model name (letters, digits, '.', '_', '-')")


def check_version_id(version: str) -> str:
    if not isinstance(version, str) or not VERSION_ID.match(version):
        raise PromotionError(f"{version!r} is not a version id (letters, digits, '.', '_', '+', '-'; at most 64)")
    return version


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            value = json.load(fh)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _found_versions(name: str, models_dir: str | os.PathLike[str] | None) -> Iterator[VersionInfo]:
    """Every complete version under every root, earlier roots first (duplicates included)."""
    for root in model_roots(models_dir):
        folder = root / name
        if not folder.is_dir():
            continue
        shipped = _is_shipped(root)
        if checkpoints.is_model_dir(folder):
            metadata = _read_json(folder / checkpoints.METADATA_FILE) or {}
            version = str(metadata.get("version") or "unversioned")
            yield VersionInfo(name, version, folder, flat=True, shipped=shipped, metadata=metadata)
        try:
            children = sorted(folder.iterdir())
        except OSError:
            continue
        for child in children:
            if VERSION_ID.match(child.name) and child.is_dir() and checkpoints.is_model_dir(child):
                metadata = _read_json(child / checkpoints.METADATA_FILE) or {}
                yield VersionInfo(name, child.name, child, flat=False, shipped=shipped, metadata=metadata)


def read_pointer(name: str, models_dir: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The first readable ``promoted.json`` for this name (writable root first), or None."""
    for root in model_roots(models_dir):
        pointer = _read_json(root / name / POINTER_FILE)
        if pointer and isinstance(pointer.get("version"), str):
            return pointer
    return None


def list_versions(name: str, models_dir: str | os.PathLike[str] | None = None) -> list[VersionInfo]:
    """All versions of ``name``, oldest id first, with the serving one marked. Empty if none exist."""
    _check_name(name)
    versions: dict[str, VersionInfo] = {}
    default: str | None = None
    for info in _found_versions(name, models_dir):
        if info.id in versions:
            continue
        versions[info.id] = info
        if info.flat and default is None:
            default = info.id
    if not versions:
        return []
    pointer = read_pointer(name, models_dir)
    serving = pointer["version"] if pointer and pointer["version"] in versions else None
    serving = serving or default or max(versions)
    promoted_at: dict[str, str] = {}
    if pointer:
        for entry in pointer.get("history", []):
            if isinstance(entry, dict) and isinstance(entry.get("version"), str):
                promoted_at[entry["version"]] = str(entry.get("promoted_at"))
        promoted_at[pointer["version"]] = str(pointer.get("promoted_at"))
    return [
        dataclasses.replace(info, promoted=info.id == serving, promoted_at=promoted_at.get(info.id))
        for info in sorted(versions.values(), key=lambda v: v.id)
    ]


def promoted_version(name: str, models_dir: str | os.PathLike[str] | None = None) -> VersionInfo:
    """The version that serves ``name``."""
    versions = list_versions(name, models_dir)
    for info in versions:
        if info.promoted:
            return info
    searched = ", ".join(str(root / name) for root in model_roots(models_dir))
    raise ModelNotFoundError(f"no model named {name!r}; looked in: {searched}")


def resolve_model_dir(model: str | os.PathLike[str], models_dir: str | os.PathLike[str] | None = None) -> Path:
    """Turn a model name ("digits") or a path into the directory holding its checkpoint.

    A name resolves to the version that serves it."""
    path = Path(model)
    if path.is_dir():
        if checkpoints.is_model_dir(path):
            return path
        raise ModelNotFoundError(
            f"{path} has no {checkpoints.METADATA_FILE} and {checkpoints.CHECKPOINT_PREFIX}.index checkpoint"
        )
    name = str(model)
    if os.sep in name or "/" in name or name in ("", ".", ".."):
        raise ModelNotFoundError(f"model directory {name!r} does not exist")
    return promoted_version(name, models_dir).path


def get_version(name: str, version: str, models_dir: str | os.PathLike[str] | None = None) -> VersionInfo:
    versions = list_versions(name, models_dir)
    for info in versions:
        if info.id == version:
            return info
    if not versions:
        promoted_version(name, models_dir)  # raises the "no model named" error
    raise VersionNotFoundError(name, version, [v.id for v in versions])


# ---- writing ------------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never a mix; a crash leaves the old one in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _write_pointer(name: str, models_dir: str | os.PathLike[str] | None, pointer: dict[str, Any]) -> Path:
    target = writable_root(models_dir) / name / POINTER_FILE
    try:
        write_json_atomically(target, pointer)
    except OSError as exc:
        raise PromotionError(
            f"cannot write {target} ({exc.strerror or exc}); pass --models-dir (or set DIGITREC_DATA_DIR) "
            "to a writable folder"
        ) from exc
    return target


@contextlib.contextmanager
def _pointer_lock(name: str, models_dir: str | os.PathLike[str] | None) -> Iterator[None]:
    """One promotion at a time per model (the CLI and a fine-tuning run may both promote)."""
    folder = writable_root(models_dir) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / LOCK_FILE, "a")
    except OSError as exc:
        raise PromotionError(
            f"cannot write in {folder} ({exc.strerror or exc}); pass --models-dir (or set DIGITREC_DATA_DIR) "
            "to a writable folder"
        ) from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def promote(
    name: str, version: str, models_dir: str | os.PathLike[str] | None = None, *, reason: str | None = None
) -> VersionInfo:
    """Make ``version`` the one that serves; the version serving before is kept for ``rollback``."""
    target = get_version(name, version, models_dir)
    with _pointer_lock(name, models_dir):
        return _promote_locked(name, target, models_dir, reason)


def _promote_locked(
    name: str, target: VersionInfo, models_dir: str | os.PathLike[str] | None, reason: str | None
) -> VersionInfo:
    version = target.id
    current = promoted_version(name, models_dir)
    pointer = read_pointer(name, models_dir) or {}
    history = [e for e in pointer.get("history", []) if isinstance(e, dict) and isinstance(e.get("version"), str)]
    if current.id != version:
        history.append({"version": current.id, "promoted_at": current.promoted_at or pointer.get("promoted_at")})
    document = {"version": version, "promoted_at": _now(), "history": history[-HISTORY_LIMIT:]}
    if reason:
        document["reason"] = reason
    _write_pointer(name, models_dir, document)
    return dataclasses.replace(target, promoted=True, promoted_at=document["promoted_at"])


def rollback(name: str, models_dir: str | os.PathLike[str] | None = None) -> VersionInfo:
    """Serve the version that served before the current one (skipping versions deleted since)."""
    with _pointer_lock(name, models_dir):
        return _rollback_locked(name, models_dir)


def _rollback_locked(name: str, models_dir: str | os.PathLike[str] | None) -> VersionInfo:
    pointer = read_pointer(name, models_dir)
    available = {v.id for v in list_versions(name, models_dir)}
    history = [e for e in (pointer or {}).get("history", []) if isinstance(e, dict)]
    current = pointer["version"] if pointer else None
    while history:
        entry = history.pop()
        version = entry.get("version")
        if version in available and version != current:
            document = {
                "version": version,
                "promoted_at": _now(),
                "history": history,
                "reason": f"rollback from {current}",
            }
            _write_pointer(name, models_dir, document)
            return get_version(name, version, models_dir)
    raise PromotionError(f"model {name!r}: no earlier version to roll back to (promote one first)")


def pin_serving_version(name: str, models_dir: str | os.PathLike[str] | None = None) -> VersionInfo | None:
    """Write the version serving now into a pointer if there is none, so adding a version cannot change it."""
    if read_pointer(name, models_dir) is not None:
        return None
    try:
        current = promoted_version(name, models_dir)
    except ModelNotFoundError:
        return None
    with _pointer_lock(name, models_dir):
        if read_pointer(name, models_dir) is not None:
            return None
        _write_pointer(name, models_dir, {"version": current.id, "promoted_at": _now(), "history": []})
    return current


def new_version_id(now: _dt.datetime | None = None) -> str:
    """A fresh id that sorts after the date-only ids of the shipped models: ``2026-12-01-225400``."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%d-%H%M%S")


def new_version_dir(name: str, models_dir: str | os.PathLike[str] | None = None) -> Path:
    """Create and return an empty ``<writable root>/<name>/<new id>/`` for a writer to fill.

    The folder counts as a version once its model.json and checkpoint index exist (write the
    checkpoint first and model.json last, e.g. with ``checkpoints.write_metadata``). It does not serve
    until it is promoted: the current choice is pinned in ``promoted.json`` first.
    """
    _check_name(name)
    pin_serving_version(name, models_dir)
    folder = writable_root(models_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    base = new_version_id()
    existing = {v.id for v in list_versions(name, models_dir)}
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}.{n}"
        if candidate in existing:
            continue
        try:
            (folder / candidate).mkdir()
        except FileExistsError:
            continue
        return folder / candidate
    raise PromotionError(f"could not find a free version id under {folder}")
