"""Request images outside the service: find a record's image, export images, migrate old upload files.

A record's image is kept once, in the records store. Records written before images travelled with
their record (and those of a service run with ``DIGITREC_KEEP_UPLOAD_FILES=1``) have a file under
``<data dir>/uploads``. These helpers read either, for ``digitrec records export --images``, and move
the files into the store for ``digitrec records migrate``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from digitrec.errors import DigitrecError
from digitrec.records.record import PredictionRecord
from digitrec.records.store import RecordStore


def upload_file(data_dir: Path, image_path: str | None) -> Path | None:
    """The file a record's ``image_path`` names, if it exists inside ``<data dir>/uploads`` (never outside)."""
    if not image_path:
        return None
    candidate = (Path(data_dir) / image_path).resolve()
    root = (Path(data_dir) / "uploads").resolve()
    if root not in candidate.parents or not candidate.is_file():
        return None
    return candidate


def record_image(store: RecordStore, record: PredictionRecord, data_dir: Path) -> bytes | None:
    """The record's image: the store's copy, else its upload file; None when neither exists."""
    if not record.has_image:
        return None
    data = store.get_image(record.request_id)
    if data is not None:
        return data
    path = upload_file(data_dir, record.image_path)
    return path.read_bytes() if path is not None else None


class ImageSink:
    """PNG files named ``<request id>.png`` into a folder, or into a zip file when the name ends in .zip."""

    def __init__(self, target: Path) -> None:
        self.target = Path(target)
        self._zip: zipfile.ZipFile | None = None
        try:
            if self.target.suffix.lower() == ".zip":
                self.target.parent.mkdir(parents=True, exist_ok=True)
                # PNG is compressed already: store the members as they are.
                self._zip = zipfile.ZipFile(self.target, "w", compression=zipfile.ZIP_STORED)
            else:
                self.target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DigitrecError(f"cannot write images to {self.target}: {exc.strerror or exc}") from None

    def write(self, record: PredictionRecord, data: bytes) -> None:
        name = f"{record.request_id}.png"
        if self._zip is not None:
            when = record.request_time.timetuple()[:6]
            self._zip.writestr(zipfile.ZipInfo(name, date_time=when), data)
        else:
            (self.target / name).write_bytes(data)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> ImageSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ProgressBar:
    """A one-line bar on a terminal (``[#####-----] 120/500 24%``), silent elsewhere unless forced."""

    def __init__(self, total: int, label: str, out: IO[str] = sys.stderr, force: bool = False) -> None:
        self.total, self.label, self.out = total, label, out
        self.enabled = force or (hasattr(out, "isatty") and out.isatty())
        self.done = 0
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last >= 0.1 or self.done >= self.total):
            self._last = now
            self._draw()

    def _draw(self) -> None:
        fraction = 1.0 if self.total == 0 else min(self.done / self.total, 1.0)
        filled = int(fraction * 30)
        bar = "#" * filled + "-" * (30 - filled)
        self.out.write(f"\r{self.label} [{bar}] {self.done}/{self.total} {fraction:4.0%}")
        self.out.flush()

    def finish(self) -> None:
        if self.enabled:
            self._draw()
            self.out.write("\n")
            self.out.flush()


@dataclasses.dataclass
class MigrationReport:
    """What ``migrate_images`` did with each record that has an upload file name."""

    copied: int = 0
    already_stored: int = 0
    missing_file: int = 0
    mismatched: list[str] = dataclasses.field(default_factory=list)  # request ids whose file is not their image
    expired: int = 0
    removed: int = 0  # upload files deleted because the store holds the same image

    def summary(self) -> str:
        return (
            f"copied {self.copied}, already in the store {self.already_stored}, file missing {self.missing_file}, "
            f"file does not match the record's SHA-256 {len(self.mismatched)}, record expired {self.expired}; "
            f"files removed {self.removed}"
        )


def migrate_images(
    store: RecordStore,
    records: Iterable[PredictionRecord],
    data_dir: Path,
    progress: ProgressBar | None = None,
    *,
    remove_files: bool = True,
) -> MigrationReport:
    """Move the upload files of ``records`` into ``store``; idempotent (stored images are skipped).

    A file is stored only when its SHA-256 is the one the record names, so a replaced or damaged file
    is reported instead of being attached to the wrong record. With ``remove_files`` a file is deleted
    once the store has committed its image (or already held it), and only when its bytes are the
    record's image; any other file stays where it is.
    """
    report = MigrationReport()
    for record in records:
        try:
            if record.image_path is None:
                continue
            path = upload_file(data_dir, record.image_path)
            if store.has_image(record.request_id):
                report.already_stored += 1
                if remove_files and path is not None and _is_records_image(record, path.read_bytes()):
                    _remove(path, report)
                continue
            if path is None:
                report.missing_file += 1
                continue
            data = path.read_bytes()
            if record.image_sha256 and not _is_records_image(record, data):
                report.mismatched.append(str(record.request_id))
                continue
            if not data:
                report.missing_file += 1
            elif store.add_image(record, data):  # durable when it returns
                report.copied += 1
                if remove_files and record.image_sha256:
                    _remove(path, report)
            else:
                report.expired += 1
        finally:
            if progress is not None:
                progress.advance()
    if progress is not None:
        progress.finish()
    return report


def _is_records_image(record: PredictionRecord, data: bytes) -> bool:
    return bool(record.image_sha256) and hashlib.sha256(data).hexdigest() == record.image_sha256.lower()


def _remove(path: Path, report: MigrationReport) -> None:
    try:
        path.unlink()
        report.removed += 1
    except FileNotFoundError:
        pass
