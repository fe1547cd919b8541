"""Shared encodings: record <-> JSON (for the spool), timeuuid sort keys, and the opaque ``latest()`` cursor.

Both engines order records the same way: day descending, then request id (timeuuid) descending using
Cassandra's timeuuid comparison, so a cursor means the same thing whichever engine made it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import uuid

from digitrec.records.exceptions import InvalidCursorError
from digitrec.records.record import Mark, PredictionRecord

_CURSOR_VERSION = "1"


def check_storable(record: PredictionRecord) -> None:
    """Reject what no engine can store, before anything is written (so nothing poisons the spool)."""
    if not isinstance(record, PredictionRecord):
        raise TypeError(f"expected a PredictionRecord, got {type(record).__name__}")
    if not isinstance(record.request_id, uuid.UUID) or record.request_id.version != 1:
        raise ValueError(f"request_id must be a time-based (version 1) UUID, got {record.request_id!r}")
    if not all(math.isfinite(p) for p in record.probabilities) or not math.isfinite(record.confidence):
        raise ValueError(f"record {record.request_id}: confidence and probabilities must be finite numbers")
    if record.domain_score is not None and not math.isfinite(record.domain_score):
        raise ValueError(f"record {record.request_id}: domain_score must be a finite number")


def timeuuid_sort_key(value: uuid.UUID) -> bytes:
    """16 bytes whose byte order equals Cassandra's timeuuid order (timestamp, then signed-byte tail)."""
    tail = bytes(b ^ 0x80 for b in value.bytes[8:])
    return value.time.to_bytes(8, "big") + tail


def record_to_json(record: PredictionRecord) -> str:
    data = record.to_json()
    data.pop("day", None)
    return json.dumps(data, separators=(",", ":"))


def record_from_json(text: str) -> PredictionRecord:
    data = json.loads(text)
    return record_from_dict(data)


def record_from_dict(data: dict) -> PredictionRecord:
    """Inverse of ``PredictionRecord.to_json()`` (the ``day`` key is derived, so it is ignored).

    Keys added to the record later (``kind`` .. ``corrected_text``) may be missing: JSON written
    before they existed (a spool file from an older version) reads as the one-digit record it was."""
    when = dt.datetime.fromisoformat(data["request_time"])
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    corrected = data.get("corrected_label")
    return PredictionRecord(
        request_id=uuid.UUID(data["request_id"]),
        request_time=when,
        model_name=data["model_name"],
        model_version=data["model_version"],
        label=int(data["label"]),
        class_name=data["class_name"],
        confidence=float(data["confidence"]),
        probabilities=tuple(float(p) for p in data["probabilities"]),
        source=data["source"],
        file_name=data.get("file_name"),
        image_path=data.get("image_path"),
        image_sha256=data.get("image_sha256"),
        processing_ms=float(data.get("processing_ms") or 0.0),
        corrected_label=None if corrected is None else int(corrected),
        kind=data.get("kind") or "digit",
        text=data.get("text"),
        digits=marks_from_json(data.get("digits")),
        refused=marks_from_json(data.get("refused")),
        in_domain=None if data.get("in_domain") is None else bool(data["in_domain"]),
        domain_score=None if data.get("domain_score") is None else float(data["domain_score"]),
        corrected_text=data.get("corrected_text"),
        correction_key_sha256=data.get("correction_key_sha256"),
        corrected_by=data.get("corrected_by"),
        corrected_client=data.get("corrected_client"),
        correction_rejected=bool(data.get("correction_rejected") or False),
    )


def marks_to_json(record: PredictionRecord, which: str) -> str | None:
    """A reading's ``digits`` or ``refused`` as one JSON text (how both engines store them); None for a
    one-digit record, which has neither."""
    if not record.is_reading:
        return None
    return json.dumps([m.to_json() for m in getattr(record, which)], separators=(",", ":"))


def marks_from_json(value: str | list | None) -> tuple[Mark, ...]:
    if value is None or value == "":
        return ()
    items = json.loads(value) if isinstance(value, str) else value
    return tuple(Mark.from_json(m) for m in items)


def encode_cursor(day: dt.date, request_id: uuid.UUID) -> str:
    raw = f"{_CURSOR_VERSION}|{day.isoformat()}|{request_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.date, uuid.UUID]:
    """The (day, request id) of the last record of the previous page; older records follow it."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        version, day, request_id = base64.urlsafe_b64decode(padded.encode("ascii")).decode().split("|")
        if version != _CURSOR_VERSION:
            raise ValueError(version)
        return dt.date.fromisoformat(day), uuid.UUID(request_id)
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursorError(f"not a records cursor: {cursor[:60]!r}") from None


def as_utc(value: dt.datetime) -> dt.datetime:
    """A naive datetime from a driver is UTC; make it aware so records compare equal across engines."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
