"""The one record type: what the service remembers about each prediction it made."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Sequence

SOURCES = ("canvas", "upload", "api", "legacy")

# A random node id per process (multicast bit set, as RFC 4122 asks for non-MAC nodes), so two
# processes on one host never mint the same time-based UUID even within one 100 ns tick.
_NODE = int.from_bytes(os.urandom(6), "big") | 0x010000000000


def new_request_id() -> uuid.UUID:
    """A time-based (version 1) UUID: unique per request and sortable by time, like a Cassandra timeuuid."""
    return uuid.uuid1(node=_NODE)


def utc_now_ms() -> dt.datetime:
    """Now in UTC, truncated to the millisecond (the precision Cassandra's timestamp keeps)."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclasses.dataclass(frozen=True)
class PredictionRecord:
    """One prediction request and its result.

    ``image_path`` is relative to the data directory; ``file_name`` is the client's name, kept only as
    data (never used to build a path).
    """

    request_id: uuid.UUID
    request_time: dt.datetime
    model_name: str
    model_version: str
    label: int
    class_name: str
    confidence: float
    probabilities: tuple[float, ...]
    source: str
    file_name: str | None = None
    image_path: str | None = None
    image_sha256: str | None = None
    processing_ms: float = 0.0
    corrected_label: int | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")
        if self.request_time.tzinfo is None:
            raise ValueError("request_time must be timezone-aware (UTC)")
        if len(self.probabilities) != 10:
            raise ValueError(f"probabilities must have 10 values, got {len(self.probabilities)}")

    @property
    def has_image(self) -> bool:
        """Whether the request's image was kept (as a file named by ``image_path`` and/or in the store)."""
        return self.image_path is not None or self.image_sha256 is not None

    @property
    def day(self) -> dt.date:
        """The UTC day bucket (Cassandra partition key)."""
        return self.request_time.astimezone(dt.timezone.utc).date()

    @classmethod
    def new(
        cls,
        *,
        model_name: str,
        model_version: str,
        label: int,
        class_name: str,
        confidence: float,
        probabilities: Sequence[float],
        source: str,
        file_name: str | None = None,
        image_path: str | None = None,
        image_sha256: str | None = None,
        processing_ms: float = 0.0,
    ) -> PredictionRecord:
        """A record for a request happening now, with a fresh request id."""
        return cls(
            request_id=new_request_id(),
            request_time=utc_now_ms(),
            model_name=model_name,
            model_version=model_version,
            label=int(label),
            class_name=class_name,
            confidence=float(confidence),
            probabilities=tuple(float(p) for p in probabilities),
            source=source,
            file_name=file_name,
            image_path=image_path,
            image_sha256=image_sha256,
            processing_ms=float(processing_ms),
        )

    def with_correction(self, corrected_label: int | None) -> PredictionRecord:
        return dataclasses.replace(self, corrected_label=corrected_label)

    def to_json(self) -> dict:
        """A JSON-ready dict (UUID and time as strings) for the API and `records list --json`."""
        data = dataclasses.asdict(self)
        data["request_id"] = str(self.request_id)
        data["request_time"] = self.request_time.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
        data["day"] = self.day.isoformat()
        data["probabilities"] = list(self.probabilities)
        return data


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PredictionRecord))
"""The record's fields in order: every adapter's column list is built from this one tuple."""
