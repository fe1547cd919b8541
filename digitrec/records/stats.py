"""Aggregates for the dashboard: what the store computes so nobody loads a million records into Python.

SQLite fills ``RecordStats`` from GROUP BY queries; Cassandra (no GROUP BY across partitions) feeds a
bounded scan of the asked-for days through ``StatsAccumulator``. Both produce the same value, so the
service and the tests do not care which engine answered.
"""

from __future__ import annotations

import dataclasses
import heapq
import uuid
from collections.abc import Callable

from digitrec.records.record import PredictionRecord

HISTOGRAM_BINS = 20
REVIEW_LIMIT = 12


def confidence_bin(confidence: float) -> int:
    """The histogram bin of a confidence: 20 bins of width 0.05, 1.0 in the last one."""
    return min(max(int(confidence * HISTOGRAM_BINS), 0), HISTOGRAM_BINS - 1)


@dataclasses.dataclass
class Tally:
    """Predictions, how many of them users corrected, and how many corrections disagree with the model."""

    count: int = 0
    corrected: int = 0
    wrong: int = 0

    def add(self, count: int, corrected: int, wrong: int) -> None:
        self.count += count
        self.corrected += corrected
        self.wrong += wrong

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "corrected": self.corrected, "wrong": self.wrong}


@dataclasses.dataclass
class VersionSpan:
    """When a version answered within the window (ISO 8601 UTC times) and how it did."""

    version: str
    first: str
    last: str
    tally: Tally = dataclasses.field(default_factory=Tally)


@dataclasses.dataclass
class RecordStats:
    """Everything the dashboard shows for one model over a window of days."""

    hourly: dict[tuple[str, str], Tally] = dataclasses.field(default_factory=dict)
    """(hour as ``YYYY-MM-DDTHH``, version) -> tally."""
    histogram: list[Tally] = dataclasses.field(default_factory=lambda: [Tally() for _ in range(HISTOGRAM_BINS)])
    confusion: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict)
    """(predicted label, corrected label) -> number of corrected records."""
    versions: dict[str, VersionSpan] = dataclasses.field(default_factory=dict)
    review: list[PredictionRecord] = dataclasses.field(default_factory=list)
    """The least confident uncorrected predictions, least confident first."""
    scanned: int = 0
    """Rows the engine read to answer: Cassandra counts rows of other models too; SQLite, matching records."""
    truncated: bool = False
    """True when a scan bound stopped the engine before it read every day of the window."""
    readings: int = 0
    """Records of the window that are readings (a row of digits in one image)."""
    refused: int = 0
    """Records of the window where something did not look like one of the model's classes."""

    @property
    def total(self) -> Tally:
        total = Tally()
        for tally in self.hourly.values():
            total.add(tally.count, tally.corrected, tally.wrong)
        return total


class StatsAccumulator:
    """Builds ``RecordStats`` one row at a time, for engines that scan instead of grouping."""

    def __init__(self, review_limit: int = REVIEW_LIMIT) -> None:
        self.stats = RecordStats()
        self._review_limit = review_limit
        self._review: list[tuple[float, int, uuid.UUID]] = []  # max-heap by confidence (negated)
        self._seq = 0

    def add(
        self,
        *,
        request_id: uuid.UUID,
        time_iso: str,
        version: str,
        label: int,
        confidence: float,
        corrected_label: int | None,
        text: str | None = None,
        corrected_text: str | None = None,
        kind: str | None = None,
        in_domain: bool | None = None,
    ) -> None:
        """One record; a reading counts as corrected (and wrong) by its text, as SQLite's tallies do."""
        stats = self.stats
        stats.readings += kind == "reading"
        stats.refused += in_domain is False
        corrected = int(corrected_label is not None or corrected_text is not None)
        wrong = int(
            (corrected_label is not None and corrected_label != label)
            or (corrected_text is not None and corrected_text != text)
        )
        key = (time_iso[:13], version)
        tally = stats.hourly.get(key)
        if tally is None:
            tally = stats.hourly[key] = Tally()
        tally.add(1, corrected, wrong)
        stats.histogram[confidence_bin(confidence)].add(1, corrected, wrong)
        if corrected_label is not None:
            pair = (label, corrected_label)
            stats.confusion[pair] = stats.confusion.get(pair, 0) + 1
        span = stats.versions.get(version)
        if span is None:
            span = stats.versions[version] = VersionSpan(version, time_iso, time_iso)
        span.first, span.last = min(span.first, time_iso), max(span.last, time_iso)
        span.tally.add(1, corrected, wrong)
        if not corrected and self._review_limit:
            self._seq += 1
            item = (-confidence, -self._seq, request_id)
            if len(self._review) < self._review_limit:
                heapq.heappush(self._review, item)
            elif item > self._review[0]:
                heapq.heapreplace(self._review, item)

    def review_ids(self) -> list[uuid.UUID]:
        """Ids of the least confident uncorrected records seen, least confident first."""
        return [rid for _neg, _seq, rid in sorted(self._review, reverse=True)]

    def finish(self, fetch: Callable[[uuid.UUID], PredictionRecord | None]) -> RecordStats:
        self.stats.review = [r for r in (fetch(rid) for rid in self.review_ids()) if r is not None]
        return self.stats
