"""The one store interface every engine adapter (SQLite, Cassandra, the spool wrapper) implements."""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Mapping

from digitrec.records.query import RecordFilter, StatsWindow
from digitrec.records.record import PredictionRecord
from digitrec.records.stats import RecordStats


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of records, newest first; pass ``next_cursor`` back to ``latest`` to read older ones."""

    records: list[PredictionRecord]
    next_cursor: str | None


@dataclasses.dataclass(frozen=True)
class Health:
    ok: bool
    engine: str
    detail: str = ""
    spool_depth: int = 0


class RecordStore(abc.ABC):
    """Thread-safe storage of prediction records. Writes are idempotent on ``request_id``."""

    engine: str = "abstract"

    @abc.abstractmethod
    def add(self, record: PredictionRecord, image: bytes | None = None) -> None:
        """Store durably, with the request's image bytes when given; when this returns both survive a
        crash of this process (they are written in the same durability step)."""

    def add_many(self, records: Iterable[PredictionRecord], images: Mapping[uuid.UUID, bytes] | None = None) -> None:
        """Like ``add`` for many records; ``images`` maps request ids (of these records) to image bytes."""
        records = list(records)
        images = images or {}
        check_images(records, images)
        for record in records:
            self.add(record, images.get(record.request_id))

    def add_checked(self, records: list[PredictionRecord], images: dict[uuid.UUID, bytes]) -> None:
        """``add_many`` for records that passed ``check_storable`` and images that ``check_images``
        returned: a wrapper that checked them already (the spool) spares the engine checking again."""
        self.add_many(records, images)

    @abc.abstractmethod
    def get(self, request_id: uuid.UUID) -> PredictionRecord | None: ...

    @abc.abstractmethod
    def get_image(self, request_id: uuid.UUID) -> bytes | None:
        """The image stored with a record, or None (unknown id, or a record written without one)."""

    @abc.abstractmethod
    def add_image(self, record: PredictionRecord, image: bytes) -> bool:
        """Attach an image to a record written earlier without one (``records migrate``); idempotent.

        False when the record's lifetime (TTL) is already over, so there is nothing to attach it to.
        """

    def has_image(self, request_id: uuid.UUID) -> bool:
        return self.get_image(request_id) is not None

    @abc.abstractmethod
    def latest(self, limit: int = 20, cursor: str | None = None) -> Page:
        """Newest first. ``cursor`` is an opaque string from a previous page."""

    def find(self, where: RecordFilter, limit: int = 20, cursor: str | None = None) -> Page:
        """Records matching ``where``, newest first, paged like ``latest``.

        A page may hold fewer than ``limit`` records and still carry a cursor when an engine stopped at
        its scan bound (Cassandra); an empty ``next_cursor`` is the only sign that nothing older matches.
        """
        raise NotImplementedError(f"the {self.engine} store cannot filter records")

    def summarize(self, window: StatsWindow) -> RecordStats:
        """Dashboard aggregates for one model over whole days, computed by the engine."""
        raise NotImplementedError(f"the {self.engine} store cannot aggregate records")

    @abc.abstractmethod
    def by_day(self, day: dt.date) -> list[PredictionRecord]:
        """All records of one UTC day, newest first."""

    @abc.abstractmethod
    def set_correction(
        self, request_id: uuid.UUID, corrected_label: int | str | None, by: str | None = None, client: str | None = None
    ) -> bool:
        """Record what the user says was right: a class 0-9 for a one-digit record, the digits as text
        (``"2026"``) for a reading, None to take a correction back; and who said it (``by``, a role of
        ``CORRECTION_ROLES``, and ``client``, a salted hash of the client's address). False when the id
        is unknown; ValueError for a value that is not a correction or does not fit the record's kind."""

    def reject_correction(self, request_id: uuid.UUID, rejected: bool = True) -> bool:
        """Mark a record's correction as rejected by a reviewer (fine-tuning skips it), or undo that;
        False when the id is unknown or the record has no correction."""
        raise NotImplementedError(f"the {self.engine} store cannot reject corrections")

    def delete(self, request_id: uuid.UUID) -> bool:
        """Remove the record and its image for good (not a mark: the bytes are gone from the engine's
        files, as far as the engine can tell); False when the id is unknown. Upload files and spool
        copies are ``deletion.delete_record``'s part."""
        raise NotImplementedError(f"the {self.engine} store cannot delete records")

    def purge_before(self, day: dt.date, limit: int = 500) -> list[PredictionRecord]:
        """Delete up to ``limit`` records of UTC days before ``day``, oldest first; returns them (their
        ``image_path`` names upload files to remove). An empty list: nothing older is left."""
        raise NotImplementedError(f"the {self.engine} store cannot purge records")

    def scrub(self) -> bool:
        """After deletes: make sure deleted bytes are not left in logs the engine keeps (SQLite's WAL).
        True when done."""
        return True

    @abc.abstractmethod
    def health(self) -> Health: ...

    @property
    def spool_depth(self) -> int:
        """Records waiting in a spool for this store (0 for stores without one)."""
        return 0

    def close(self) -> None:  # noqa: B027 (an optional hook, deliberately not abstract)
        """Release connections and threads. Safe to call twice."""

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_image(record: PredictionRecord, image: object) -> bytes:
    """Refuse an image no engine should keep with this record: empty, not bytes, or not the bytes whose
    SHA-256 the record names (that would attach one request's picture to another's record)."""
    if not isinstance(image, (bytes, bytearray, memoryview)):
        raise TypeError(f"record {record.request_id}: image must be bytes, not {type(image).__name__}")
    data = bytes(image)
    if not data:
        raise ValueError(f"record {record.request_id}: image is empty")
    if record.image_sha256 is not None and hashlib.sha256(data).hexdigest() != record.image_sha256.lower():
        raise ValueError(f"record {record.request_id}: image bytes do not match the record's image_sha256")
    return data


def check_images(records: list[PredictionRecord], images: Mapping[uuid.UUID, bytes]) -> dict[uuid.UUID, bytes]:
    """``check_image`` for each image, which must belong to one of ``records``; returns clean bytes."""
    by_id = {r.request_id: r for r in records}
    clean = {}
    for request_id, image in images.items():
        record = by_id.get(request_id)
        if record is None:
            raise ValueError(f"image given for {request_id}, which is not among the records written")
        clean[request_id] = check_image(record, image)
    return clean
