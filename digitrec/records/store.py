"""The one store interface every engine adapter (SQLite, Cassandra, the spool wrapper) implements."""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable

from digitrec.records.record import PredictionRecord


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
    def add(self, record: PredictionRecord) -> None:
        """Store durably; when this returns the record survives a crash of this process."""

    def add_many(self, records: Iterable[PredictionRecord]) -> None:
        for record in records:
            self.add(record)

    @abc.abstractmethod
    def get(self, request_id: uuid.UUID) -> PredictionRecord | None: ...

    @abc.abstractmethod
    def latest(self, limit: int = 20, cursor: str | None = None) -> Page:
        """Newest first. ``cursor`` is an opaque string from a previous page."""

    @abc.abstractmethod
    def by_day(self, day: dt.date) -> list[PredictionRecord]:
        """All records of one UTC day, newest first."""

    @abc.abstractmethod
    def set_correction(self, request_id: uuid.UUID, corrected_label: int | None) -> bool:
        """Record what the user says the right label was; False when the id is unknown."""

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
