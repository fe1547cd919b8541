"""Read the ``time`` argument of seed 002's ``insertRecord``: the strings old code wrote, as local time.

Seed 002 called ``insertRecord(name, datetime.now().strftime('%Y-%m-%d, %H:%M'), label)``: a wall-clock
time of the machine, without a zone. So text and naive datetimes without a zone are read as this
machine's local time (as the seed meant them) and stored as UTC. Accepted, besides ISO 8601:
year-month-day orders only (``2019-09-24, 09:14``, ``2019/09/24 09:14:05``, ``24.09.2019 09:14``) and
``time.ctime()`` text; day/month orders with slashes (``09/10/2019``) are refused as ambiguous.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

# Tried in order after datetime.fromisoformat; the date parts are unambiguous (year first, or the
# dotted day.month.year that nobody writes month-first).
FORMATS = (
    "%Y-%m-%d, %H:%M",  # seed 002's webservice
    "%Y-%m-%d, %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d, %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d, %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y, %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y, %H:%M",
    "%a %b %d %H:%M:%S %Y",  # time.ctime() and datetime.ctime()
)
EXAMPLES = "e.g. '2019-09-24, 09:14', '2019-09-24 09:14:05' or ISO 8601 with a zone"


def parse_legacy_time(value: Any) -> dt.datetime:
    """An aware UTC datetime for ``value``: a datetime, Unix seconds, or one of the texts above."""
    if isinstance(value, dt.datetime):
        return _to_utc(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
    if not isinstance(value, str):
        raise TypeError(f"time must be a datetime, a date-and-time text or Unix seconds, not {type(value).__name__}")
    text = re.sub(r"\s+", " ", value.strip())
    try:
        return _to_utc(dt.datetime.fromisoformat(text))
    except ValueError:
        pass
    for pattern in FORMATS:
        try:
            return _to_utc(dt.datetime.strptime(text, pattern))
        except ValueError:
            continue
    raise ValueError(f"time {value!r} is not a date and time this accepts ({EXAMPLES})")


def _to_utc(value: dt.datetime) -> dt.datetime:
    """Naive means the machine's local wall-clock time, as ``datetime.now()`` gave it to the seed."""
    if value.tzinfo is None:
        value = value.astimezone()  # attaches the local zone in force at that date (DST included)
    return value.astimezone(dt.timezone.utc)
