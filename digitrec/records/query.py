"""What a reader may ask of the records: a filter for paged lists and a day window for aggregates.

Both are plain values checked on construction, so every engine receives something already valid and the
service only has to turn query parameters into them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re

from digitrec.records.record import PredictionRecord

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$")
MAX_WINDOW_DAYS = 366


def check_name(kind: str, value: str) -> str:
    """Model names and versions are short tokens; anything else is a typo or an attack, not a filter."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"{kind} must be 1-128 letters, digits or ._:+- (starting with a letter or digit)")
    return value


@dataclasses.dataclass(frozen=True)
class RecordFilter:
    """Records matching all given conditions; ``None`` (or False) means "any"."""

    model: str | None = None
    version: str | None = None
    label: int | None = None
    corrected: bool = False
    confidence_below: float | None = None
    day: dt.date | None = None
    refused: bool = False
    """Only records where something did not look like one of the model's classes (``is_refused``)."""

    def __post_init__(self) -> None:
        if self.model is not None:
            check_name("model", self.model)
        if self.version is not None:
            check_name("version", self.version)
        if self.label is not None and (
            isinstance(self.label, bool) or not isinstance(self.label, int) or not 0 <= self.label <= 9
        ):
            raise ValueError(f"label must be a whole number 0-9, not {self.label!r}")
        if self.confidence_below is not None:
            value = self.confidence_below
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"confidence_below must be a number, not {value!r}")
            if not 0.0 < value <= 1.0:
                raise ValueError(f"confidence_below must be above 0 and at most 1, not {value}")
        if self.day is not None and (not isinstance(self.day, dt.date) or isinstance(self.day, dt.datetime)):
            raise ValueError(f"day must be a date, not {self.day!r}")

    @property
    def is_empty(self) -> bool:
        return self == RecordFilter()

    def matches(self, record: PredictionRecord) -> bool:
        """The same test the SQL WHERE clause makes, for engines that filter in the client."""
        return (
            (self.model is None or record.model_name == self.model)
            and (self.version is None or record.model_version == self.version)
            and (self.label is None or record.label == self.label)
            and (not self.corrected or record.correction is not None)
            and (not self.refused or record.is_refused)
            and (self.confidence_below is None or record.confidence < self.confidence_below)
            and (self.day is None or record.day == self.day)
        )

    def to_params(self) -> dict[str, str]:
        """The query parameters that select this filter (for links to the next page)."""
        params: dict[str, str] = {}
        if self.model is not None:
            params["model"] = self.model
        if self.version is not None:
            params["version"] = self.version
        if self.label is not None:
            params["label"] = str(self.label)
        if self.corrected:
            params["corrected"] = "1"
        if self.confidence_below is not None:
            params["confidence_below"] = f"{self.confidence_below:g}"
        if self.day is not None:
            params["day"] = self.day.isoformat()
        if self.refused:
            params["refused"] = "1"
        return params


@dataclasses.dataclass(frozen=True)
class StatsWindow:
    """One model (optionally one version) over whole UTC days ``first_day`` .. ``last_day``."""

    model: str
    first_day: dt.date
    last_day: dt.date
    version: str | None = None

    def __post_init__(self) -> None:
        check_name("model", self.model)
        if self.version is not None:
            check_name("version", self.version)
        if self.first_day > self.last_day:
            raise ValueError(f"first_day {self.first_day} is after last_day {self.last_day}")
        if (self.last_day - self.first_day).days >= MAX_WINDOW_DAYS:
            raise ValueError(f"a window covers at most {MAX_WINDOW_DAYS} days")

    @classmethod
    def last_days(cls, model: str, days: int, version: str | None = None, today: dt.date | None = None) -> StatsWindow:
        """Today (UTC) and the ``days - 1`` days before it."""
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_WINDOW_DAYS:
            raise ValueError(f"days must be a whole number from 1 to {MAX_WINDOW_DAYS}, not {days!r}")
        today = today or dt.datetime.now(dt.timezone.utc).date()
        return cls(model, today - dt.timedelta(days=days - 1), today, version)

    def days_newest_first(self) -> list[dt.date]:
        span = (self.last_day - self.first_day).days
        return [self.last_day - dt.timedelta(days=i) for i in range(span + 1)]

    def contains(self, record: PredictionRecord) -> bool:
        return (
            record.model_name == self.model
            and (self.version is None or record.model_version == self.version)
            and self.first_day <= record.day <= self.last_day
        )
