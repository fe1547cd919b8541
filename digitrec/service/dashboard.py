"""The dashboard's JSON: the store's aggregates turned into series the browser draws as they come.

"Implied accuracy" counts every prediction nobody corrected as right, so it is an upper bound that is
only as good as the users' diligence; "accuracy of reviewed" is measured on corrected records alone,
which users pick because they look wrong, so it is a lower bound. Both are shown, with that caveat.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from digitrec.records.query import StatsWindow
from digitrec.records.record import PredictionRecord
from digitrec.records.stats import HISTOGRAM_BINS, RecordStats, Tally

MAX_HOURLY_DAYS = 14
"""Longer windows get the per-day series only (14 days = 336 hourly bars, still readable)."""


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def _tally_json(tally: Tally) -> dict:
    data = tally.to_json()
    data["implied_accuracy"] = None if tally.count == 0 else round(1 - tally.wrong / tally.count, 6)
    return data


def dashboard_json(
    stats: RecordStats,
    window: StatsWindow,
    *,
    class_names: list[str],
    engine: str,
    serving_version: str | None,
    record_json: Callable[[PredictionRecord], dict],
) -> dict:
    total = stats.total
    days = window.days_newest_first()[::-1]
    per_day = {d.isoformat(): Tally() for d in days}
    per_day_version: dict[str, dict[str, int]] = {d.isoformat(): {} for d in days}
    hourly_wanted = len(days) <= MAX_HOURLY_DAYS
    per_hour: dict[str, Tally] = {}
    if hourly_wanted:
        for d in days:
            for h in range(24):
                per_hour[f"{d.isoformat()}T{h:02d}"] = Tally()
    for (hour, version), tally in stats.hourly.items():
        day = hour[:10]
        if day in per_day:
            per_day[day].add(tally.count, tally.corrected, tally.wrong)
            counts = per_day_version[day]
            counts[version] = counts.get(version, 0) + tally.count
        if hour in per_hour:
            per_hour[hour].add(tally.count, tally.corrected, tally.wrong)
    matrix = [[0] * 10 for _ in range(10)]
    for (predicted, corrected), count in stats.confusion.items():
        if 0 <= predicted <= 9 and 0 <= corrected <= 9:
            matrix[predicted][corrected] += count
    width = 1 / HISTOGRAM_BINS
    return {
        "model": window.model,
        "version": window.version,
        "days": len(days),
        "first_day": window.first_day.isoformat(),
        "last_day": window.last_day.isoformat(),
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "engine": engine,
        "serving_version": serving_version,
        "totals": {
            **total.to_json(),
            "corrected_share": _share(total.corrected, total.count),
            "wrong_share": _share(total.wrong, total.count),
            "implied_accuracy": None if total.count == 0 else round(1 - total.wrong / total.count, 6),
            "reviewed_accuracy": _share(total.corrected - total.wrong, total.corrected),
            "readings": stats.readings,
            "refused": stats.refused,
            "refused_share": _share(stats.refused, total.count),
        },
        "per_day": [{"t": day, **tally.to_json()} for day, tally in per_day.items()],
        "per_hour": [{"t": hour, **tally.to_json()} for hour, tally in per_hour.items()],
        "versions": [
            {"version": span.version, "first": span.first, "last": span.last, **_tally_json(span.tally)}
            for span in sorted(stats.versions.values(), key=lambda s: s.first)
        ],
        "versions_per_day": [{"t": day, "counts": counts} for day, counts in per_day_version.items()],
        "confidence_histogram": [
            {"from": round(i * width, 4), "to": round((i + 1) * width, 4), **tally.to_json()}
            for i, tally in enumerate(stats.histogram)
        ],
        "confusion": {"class_names": class_names, "matrix": matrix},
        "review": [record_json(r) for r in stats.review],
        "scanned": stats.scanned,
        "truncated": stats.truncated,
    }
