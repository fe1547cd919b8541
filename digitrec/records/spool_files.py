"""Spool files of several processes in one data directory: who owns which, and adopting orphans.

Every serving process has its own spool file: the configured one (``spool.sqlite3``, or
DIGITREC_SPOOL_PATH) for a single process, ``<stem>.worker-<pid>.sqlite3`` beside it for each gunicorn
worker. These files form a family; only files of one's own family are adopted (the spools of other
replicas sharing a volume have other names and are left to their owners). The owner holds an exclusive ``flock`` on
``<spool>.lock`` for as long as it runs; the kernel drops that lock when the process dies, even on
``kill -9``. A spool whose lock can be taken is therefore an orphan: its records were acknowledged by a
process that is gone. Whoever takes the lock first adopts it (moves its records into its own spool,
which then replays them), and nobody else can replay the same file at the same time.

Without ``fcntl`` (Windows, where the service runs as one process) locks always succeed and adoption
only picks up files of earlier runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from digitrec.records.codec import record_from_json
from digitrec.records.record import PredictionRecord

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_WORKER_SUFFIX = re.compile(r"\.worker-\d+(-\d+)?$")
ADOPT_BATCH = 500


class SpoolLock:
    """An exclusive, non-blocking ``flock`` on ``<spool>.lock``; released by ``release`` or by death."""

    def __init__(self, spool_path: Path) -> None:
        self.path = Path(f"{spool_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
        self._fd = fd
        return True

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def worker_spool(configured: Path, pid: int) -> Path:
    """The spool file of worker ``pid`` in the family of the ``configured`` spool."""
    return configured.with_name(f"{family_stem(configured)}.worker-{pid}{configured.suffix}")


def family_stem(path: Path) -> str:
    return _WORKER_SUFFIX.sub("", path.stem)


def claim(requested: Path) -> tuple[Path, SpoolLock]:
    """Lock ``requested`` for this process, or ``<stem>.worker-<pid>[-n].sqlite3`` next to it if another
    live process owns that name (two containers sharing a volume can have workers with the same pid)."""
    requested.parent.mkdir(parents=True, exist_ok=True)
    own = worker_spool(requested, os.getpid())
    candidates = [requested, own] + [own.with_name(f"{own.stem}-{n}{own.suffix}") for n in range(1, 100)]
    for path in candidates:
        lock = SpoolLock(path)
        if lock.acquire():
            return path, lock
    raise RuntimeError(f"no free spool file name next to {requested}")


def spool_files(member: Path) -> list[Path]:
    """Every spool file of ``member``'s family (one per process, live or dead): ``<stem><suffix>`` and
    ``<stem>.worker-<pid>[-n]<suffix>``."""
    stem, folder = family_stem(member), member.parent
    found = {folder / f"{stem}{member.suffix}"}
    found |= {p for p in folder.glob(f"{glob_escape(stem)}.worker-*{member.suffix}") if _WORKER_SUFFIX.search(p.stem)}
    return sorted(p for p in found if p.is_file())


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def total_depth(member: Path) -> int:
    """Records waiting in all spool files of ``member``'s family (every process's, for /metrics and the
    CLI)."""
    return sum(depth_at(path) for path in spool_files(member))


def depth_at(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return 0
    try:
        return conn.execute("SELECT COUNT(*) FROM spool").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


@contextlib.contextmanager
def orphan(path: Path) -> Iterator[bool]:
    """Hold the lock of spool ``path`` while adopting it; yields False if its owner (or another
    adopter) holds it, or the file is already gone."""
    lock = SpoolLock(path)
    if not lock.acquire():
        yield False
        return
    try:
        exists = path.exists()
        if not exists:  # an adopter that finished just before us deleted it; drop the lock file we made
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock.path)
        yield exists
    finally:
        lock.release()


def read_orphan(
    path: Path,
) -> Iterator[tuple[list[PredictionRecord], dict[uuid.UUID, bytes], list[tuple]]]:
    """The records with their images (oldest first, in batches) and the rejected rows of an orphaned
    spool file."""
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30.0)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rejected = list(conn.execute("SELECT * FROM rejected")) if "rejected" in tables else []
        if "rejected_image" in tables:  # carried as extra columns: (id, payload, error, at, image)
            kept = dict(conn.execute("SELECT request_id, data FROM rejected_image"))
            rejected = [(*row, kept.get(row[0])) for row in rejected]
        else:
            rejected = [(*row, None) for row in rejected]
        if "spool" not in tables:
            yield [], {}, rejected
            return
        last = 0
        while True:
            rows = conn.execute(
                "SELECT rowid, request_id, payload FROM spool WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, ADOPT_BATCH),
            ).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            images: dict[uuid.UUID, bytes] = {}
            if "spool_image" in tables:
                ids = [request_id for _, request_id, _ in rows]
                marks = ", ".join("?" * len(ids))
                for request_id, data in conn.execute(
                    f"SELECT request_id, data FROM spool_image WHERE request_id IN ({marks})", ids
                ):
                    images[uuid.UUID(request_id)] = bytes(data)
            yield [record_from_json(payload) for _, _, payload in rows], images, rejected
            rejected = []
        if rejected:
            yield [], {}, rejected
    finally:
        conn.close()


def remove_spool_file(path: Path) -> None:
    """Delete a spool file with its WAL, shared-memory and lock files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{path}.lock")


def adopt_orphans(
    own: Path,
    put: Callable[[list[PredictionRecord], dict[uuid.UUID, bytes]], None],
    put_rejected: Callable[[list[tuple]], None],
) -> int:
    """Move the records of every orphaned spool next to ``own`` into this process's spool; returns how
    many. A crash half-way leaves records in both files, which is harmless: replays are idempotent."""
    moved = 0
    for path in spool_files(own):
        if path == own:
            continue
        with orphan(path) as mine:
            if not mine:
                continue
            count = 0
            try:
                for records, images, rejected in read_orphan(path):
                    if records:
                        put(records, images)
                        count += len(records)
                    if rejected:
                        put_rejected(rejected)
            except sqlite3.Error as exc:
                log.error("cannot read orphaned spool %s (%s); leaving it in place", path, exc)
                continue
            remove_spool_file(path)
            if count:
                log.warning("adopted %d record(s) from %s, left by a process that stopped", count, path.name)
            moved += count
    return moved
