"""Query parameters -> record filters and dashboard windows, with a 400 naming the parameter on bad input.

The same names serve ``/api/v1/records``, the ``/records`` form and ``/api/v1/dashboard``; an empty value
means "not set", which is what an untouched form field sends.
"""

from __future__ import annotations

import datetime as dt
import math

from werkzeug.datastructures import MultiDict

from digitrec.records.query import MAX_WINDOW_DAYS, RecordFilter, StatsWindow, check_name
from digitrec.service.responses import ApiError

FILTER_PARAMS = ("model", "version", "label", "corrected", "confidence_below", "day", "refused")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bad(parameter: str, message: str) -> ApiError:
    return ApiError(400, f"invalid_{parameter}", f"{parameter}: {message}")


def _text(args: MultiDict, name: str) -> str | None:
    value = args.get(name, "").strip()
    return value or None


def _name(args: MultiDict, name: str) -> str | None:
    value = _text(args, name)
    if value is not None:
        try:
            check_name(name, value)
        except ValueError as exc:
            raise _bad(name, str(exc).removeprefix(f"{name} ")) from None
    return value


def filter_from_args(args: MultiDict) -> RecordFilter:
    """The record filter the query string asks for."""
    label = _text(args, "label")
    if label is not None:
        if not label.isdigit() or not 0 <= int(label) <= 9:
            raise _bad("label", f"must be a whole number from 0 to 9, not {label[:20]!r}")
    corrected = _flag(args, "corrected")
    refused = _flag(args, "refused")
    below = _text(args, "confidence_below")
    threshold = None
    if below is not None:
        try:
            threshold = float(below.rstrip("%")) / (100.0 if below.endswith("%") else 1.0)
        except ValueError:
            raise _bad("confidence_below", f"must be a number such as 0.6 or 60%, not {below[:20]!r}") from None
        if not math.isfinite(threshold) or not 0.0 < threshold <= 1.0:
            raise _bad("confidence_below", "must be above 0 and at most 1 (or 100%)")
    day = _text(args, "day")
    when = None
    if day is not None:
        try:
            when = dt.date.fromisoformat(day)
        except ValueError:
            raise _bad("day", f"must be a date YYYY-MM-DD (UTC), not {day[:20]!r}") from None
    return RecordFilter(
        model=_name(args, "model"),
        version=_name(args, "version"),
        label=None if label is None else int(label),
        corrected=corrected,
        confidence_below=threshold,
        day=when,
        refused=refused,
    )


def _flag(args: MultiDict, name: str) -> bool:
    value = (_text(args, name) or "0").lower()
    if value not in _TRUE | _FALSE:
        raise _bad(name, "must be 1 or 0 (true or false)")
    return value in _TRUE


def window_from_args(args: MultiDict, models: list[str]) -> StatsWindow:
    """The dashboard window: ``model`` (default the first served), ``version`` (default all), ``days``."""
    model = _name(args, "model") or (models[0] if models else "digits")
    raw = _text(args, "days") or "7"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WINDOW_DAYS:
        raise _bad("days", f"must be a whole number from 1 to {MAX_WINDOW_DAYS}, not {raw[:20]!r}")
    return StatsWindow.last_days(model, int(raw), _name(args, "version"))
