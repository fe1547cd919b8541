"""The one record type: what the service remembers about each prediction it made."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SOURCES = ("canvas", "upload", "api", "legacy")
CORRECTION_ROLES = ("submitter", "reviewer", "admin", "local")
TRUSTED_CORRECTION_ROLES = ("reviewer", "admin", "local")
KINDS = ("digit", "reading")
"""A record is one image: ``digit`` = one prediction (``predict``), ``reading`` = a row of digits (``read``)."""

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


def check_reading_text(text: object, *, what: str = "a reading's text", empty: bool = True) -> str:
    """The digits of a reading, left to right: only 0-9 (``empty=False``: at least one)."""
    if not isinstance(text, str) or not all("0" <= c <= "9" for c in text) or (not empty and not text):
        need = "" if empty else "at least one digit, "
        raise ValueError(f"{what} must be {need}digits 0-9 only (such as '2026'), not {str(text)[:40]!r}")
    return text


def check_correction(value: object) -> int | str | None:
    """A correction as stores keep it: a class 0-9 (one-digit record), the right digits of a reading as
    text, or None (no correction)."""
    if value is None:
        return None
    if isinstance(value, str):
        return check_reading_text(value, what="a reading's correction", empty=False)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 9:
        raise ValueError(f"a correction must be a class 0-9 or, for a reading, its digits as text; not {value!r}")
    return value


def correction_fits(kind: str, correction: int | str | None) -> bool:
    """A reading takes text, a one-digit record a class; None (removing a correction) fits both."""
    return correction is None or isinstance(correction, str) == (kind == "reading")


def wrong_correction_message(kind: str) -> str:
    if kind == "reading":
        return "this record is a reading: its correction is the right digits as text (such as '2026'), not a class"
    return "this record is one digit: its correction is a class 0-9, not a text"


def correction_columns(correction: int | str | None) -> tuple[int | None, str | None]:
    """(corrected_label, corrected_text) as stored: at most one is set."""
    if isinstance(correction, str):
        return None, correction
    return correction, None


@dataclasses.dataclass(frozen=True)
class Mark:
    """One mark of a reading as stored: where it is in the input image and what the model made of it.

    ``box`` is (x, y, width, height) in the input image's pixels; ``in_domain`` and ``domain_score`` say
    whether the mark looked like one of the model's classes (None: not judged).
    """

    label: int
    confidence: float
    box: tuple[int, int, int, int]
    in_domain: bool | None = None
    domain_score: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.label, bool) or not isinstance(self.label, int) or not 0 <= self.label <= 9:
            raise ValueError(f"a mark's label must be 0-9, not {self.label!r}")
        if not math.isfinite(self.confidence):
            raise ValueError("a mark's confidence must be a finite number")
        box = tuple(self.box)
        if len(box) != 4 or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in box):
            raise ValueError(f"a mark's box must be 4 whole numbers >= 0 (x, y, width, height), not {self.box!r}")
        object.__setattr__(self, "box", box)
        if self.domain_score is not None and not math.isfinite(self.domain_score):
            raise ValueError("a mark's domain_score must be a finite number or None")

    def to_json(self) -> dict[str, Any]:
        x, y, w, h = self.box
        return {
            "label": self.label,
            "confidence": self.confidence,
            "box": {"x": x, "y": y, "width": w, "height": h},
            "in_domain": self.in_domain,
            "domain_score": self.domain_score,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Mark:
        box = data["box"]
        if isinstance(box, Mapping):
            box = (box["x"], box["y"], box["width"], box["height"])
        in_domain, score = data.get("in_domain"), data.get("domain_score")
        return cls(
            label=int(data["label"]),
            confidence=float(data["confidence"]),
            box=tuple(int(v) for v in box),
            in_domain=None if in_domain is None else bool(in_domain),
            domain_score=None if score is None else float(score),
        )

    @classmethod
    def from_prediction(cls, prediction: Any) -> Mark:
        """From a recognizer ``Prediction`` that carries a ``box`` (and, when judged, ``in_domain``)."""
        in_domain, score = getattr(prediction, "in_domain", None), getattr(prediction, "domain_score", None)
        return cls(
            label=int(prediction.label),
            confidence=float(prediction.confidence),
            box=tuple(int(v) for v in prediction.box),
            in_domain=None if in_domain is None else bool(in_domain),
            domain_score=None if score is None else float(score),
        )


def _marks(value: Iterable[Mark | Mapping[str, Any]]) -> tuple[Mark, ...]:
    return tuple(m if isinstance(m, Mark) else Mark.from_json(m) for m in value)


@dataclasses.dataclass(frozen=True)
class PredictionRecord:
    """One prediction request and its result.

    ``image_path`` is relative to the data directory; ``file_name`` is the client's name, kept only as
    data (never used to build a path).

    A ``reading`` record (``kind``) is one image holding a row of digits: ``text`` is what was read,
    ``digits`` the marks read as digits (left to right), ``refused`` the marks that did not look like
    digits (left out of ``text``). Its ``label``, ``class_name`` and ``probabilities`` are those of its
    first mark, ``confidence`` that of the whole reading, and its correction is ``corrected_text``.
    ``in_domain`` is False when something was refused (a one-digit record: its prediction; a reading:
    any mark), None when the model did not judge it (records made before refusal existed).

    Corrections carry their provenance: ``corrected_by`` is the role that made it (``submitter``: the
    client holding the record's correction key; ``reviewer``/``admin``: a token; ``local``: an open
    service on a loopback address), ``corrected_client`` a salted hash of the client's address (never
    the address), and ``correction_rejected`` a reviewer's verdict that fine-tuning must skip it.
    ``correction_key_sha256`` is the SHA-256 of the random key the prediction's answer carried; the
    key itself is never stored.
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
    kind: str = "digit"
    text: str | None = None
    digits: tuple[Mark, ...] = ()
    refused: tuple[Mark, ...] = ()
    in_domain: bool | None = None
    domain_score: float | None = None
    corrected_text: str | None = None
    correction_key_sha256: str | None = None
    corrected_by: str | None = None
    corrected_client: str | None = None
    correction_rejected: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        object.__setattr__(self, "digits", _marks(self.digits))
        object.__setattr__(self, "refused", _marks(self.refused))
        if self.kind == "reading":
            check_reading_text(self.text)
            if self.corrected_text is not None:
                check_reading_text(self.corrected_text, what="a reading's correction", empty=False)
            if self.corrected_label is not None:
                raise ValueError("a reading is corrected by its text (corrected_text), not by corrected_label")
        elif self.text is not None or self.digits or self.refused or self.corrected_text is not None:
            raise ValueError("text, digits, refused and corrected_text belong to reading records (kind='reading')")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")
        if self.corrected_by is not None and self.corrected_by not in CORRECTION_ROLES:
            raise ValueError(f"corrected_by must be one of {CORRECTION_ROLES}, not {self.corrected_by!r}")
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
        in_domain: bool | None = None,
        domain_score: float | None = None,
        correction_key_sha256: str | None = None,
    ) -> PredictionRecord:
        """A one-digit record for a request happening now, with a fresh request id."""
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
            in_domain=None if in_domain is None else bool(in_domain),
            domain_score=None if domain_score is None else float(domain_score),
            correction_key_sha256=correction_key_sha256,
        )

    @property
    def is_reading(self) -> bool:
        return self.kind == "reading"

    @property
    def is_refused(self) -> bool:
        """Something in this image did not look like one of the model's classes (the "refused" filter)."""
        return self.in_domain is False

    @property
    def correction(self) -> int | str | None:
        """What the user said is right: a class for a one-digit record, the digits for a reading."""
        return self.corrected_text if self.is_reading else self.corrected_label

    def with_correction(
        self, correction: int | str | None, by: str | None = None, client: str | None = None
    ) -> PredictionRecord:
        """This record corrected (None removes the correction), with who did it; the kind of value must fit
        the record. A new correction is never rejected."""
        correction = check_correction(correction)
        if not correction_fits(self.kind, correction):
            raise ValueError(wrong_correction_message(self.kind))
        label, text = correction_columns(correction)
        if correction is None:
            by = client = None
        return dataclasses.replace(
            self,
            corrected_label=label,
            corrected_text=text,
            corrected_by=by,
            corrected_client=client,
            correction_rejected=False,
        )

    @classmethod
    def from_reading(
        cls,
        reading: Any,
        *,
        model_name: str,
        model_version: str,
        source: str,
        request_id: uuid.UUID | None = None,
        request_time: dt.datetime | None = None,
        file_name: str | None = None,
        image_path: str | None = None,
        image_sha256: str | None = None,
        processing_ms: float = 0.0,
    ) -> PredictionRecord:
        """The one record of a recognizer ``Reading`` (``text``, ``digits``, ``refused``, ``confidence``)."""
        digits, refused = list(reading.digits), list(getattr(reading, "refused", ()))
        marks = digits or refused
        if not marks:
            raise ValueError("a reading with no mark at all is not recorded (nothing was found in the image)")
        first = marks[0]
        scores = [getattr(p, "domain_score", None) for p in digits + refused]
        judged = [getattr(p, "in_domain", None) for p in digits + refused]
        return cls(
            request_id=request_id or new_request_id(),
            request_time=request_time or utc_now_ms(),
            model_name=model_name,
            model_version=model_version,
            label=int(first.label),
            class_name=str(getattr(first, "name", first.label)),
            confidence=float(reading.confidence),
            probabilities=tuple(float(p) for p in first.probabilities),
            source=source,
            file_name=file_name,
            image_path=image_path,
            image_sha256=image_sha256,
            processing_ms=float(processing_ms),
            kind="reading",
            text=str(reading.text),
            digits=tuple(Mark.from_prediction(p) for p in digits),
            refused=tuple(Mark.from_prediction(p) for p in refused),
            in_domain=None if all(j is None for j in judged) and not refused else not refused,
            domain_score=min((float(s) for s in scores if s is not None), default=None),
        )

    def to_json(self) -> dict:
        """A JSON-ready dict (UUID and time as strings) for the API and `records list --json`."""
        data = dataclasses.asdict(self)
        data["request_id"] = str(self.request_id)
        data["request_time"] = self.request_time.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
        data["day"] = self.day.isoformat()
        data["probabilities"] = list(self.probabilities)
        data["digits"] = [m.to_json() for m in self.digits]
        data["refused"] = [m.to_json() for m in self.refused]
        return data


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PredictionRecord))
"""The record's fields in order: every adapter's column list is built from this one tuple."""
CORRECTION_FIELDS: tuple[str, ...] = (
    "corrected_label",
    "corrected_text",
    "corrected_by",
    "corrected_client",
    "correction_rejected",
)
"""What a correction sets; a replay of the original record must not undo them (see the adapters' upserts)."""


def check_corrector(by: str | None) -> None:
    if by is not None and by not in CORRECTION_ROLES:
        raise ValueError(f"a correction is made by one of {CORRECTION_ROLES}, not {by!r}")
