"""Stored uploads: the decoded image re-encoded as PNG under a name the server makes.

The client's file name never reaches the file system; it is kept only in the record. Files land at
``uploads/YYYY/MM/DD/<request id>.png`` under the data directory, written to a temporary file and
renamed into place (``os.replace``), so a crash leaves either the whole file or none. With ``fsync`` the
bytes are also forced to the disk before the rename (power-cut safety, at ~1 ms per upload).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import uuid
from pathlib import Path

import cv2
import numpy as np

from digitrec.errors import InvalidImageError
from digitrec.records.images import upload_file

_STORED_NAME = re.compile(
    r"^(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(\.png)?$"
)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a decoded image (grey, BGR or BGRA, as OpenCV holds it)."""
    ok, buffer = cv2.imencode(".png", image)
    if not ok:
        raise InvalidImageError("the decoded image could not be re-encoded as PNG")
    return buffer.tobytes()


def parse_stored_name(name: str) -> uuid.UUID | None:
    """The request id in ``<id>`` or ``<id>.png``; None for anything else (no paths, no client names)."""
    match = _STORED_NAME.match(name)
    return uuid.UUID(match.group("id")) if match else None


class UploadStore:
    """Writes and reads the PNGs of requests under ``<data dir>/uploads``."""

    def __init__(self, data_dir: Path, *, fsync: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "uploads"
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        self._folders: set[str] = set()

    def relative_path(self, request_id: uuid.UUID, when: dt.datetime) -> str:
        day = when.astimezone(dt.timezone.utc)
        return f"uploads/{day:%Y/%m/%d}/{request_id}.png"

    def save(self, request_id: uuid.UUID, when: dt.datetime, png: bytes) -> tuple[str, str]:
        """Write ``png`` atomically; return (path relative to the data dir, SHA-256 of the bytes)."""
        relative = self.relative_path(request_id, when)
        target = self.data_dir / relative
        folder = str(target.parent)
        if folder not in self._folders:  # one mkdir per day, not one per request
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        # The request id is unique, so the temporary name is too: no random names, no retries.
        temp_name = os.path.join(folder, f".{request_id}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(temp_name, flags, 0o644)
        except FileNotFoundError:  # the folder was removed (an operator cleaning up): make it again
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp_name, flags, 0o644)
        try:
            try:
                view = memoryview(png)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp_name, target)
        except BaseException:
            try:
                os.unlink(temp_name)
            except FileNotFoundError:
                pass
            raise
        return relative, hashlib.sha256(png).hexdigest()

    def open_path(self, image_path: str | None) -> Path | None:
        """The file for a record's ``image_path`` if it exists and lies inside the uploads folder."""
        return upload_file(self.data_dir, image_path)
