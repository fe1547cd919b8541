"""The dashboard's corrections section: who corrected the window's records (by role), and the newest
corrections with whether a reviewer rejected them, so a reviewer can reject one that looks wrong."""

from __future__ import annotations

from collections.abc import Callable

from digitrec.records.query import RecordFilter, StatsWindow
from digitrec.records.record import PredictionRecord
from digitrec.records.store import RecordStore
from digitrec.records.trust import kind_of

SCAN_BOUND = 5_000  # corrections read at most per dashboard request (newest first)
LISTED = 12  # the newest corrections shown one by one


def corrections_json(store: RecordStore, window: StatsWindow, record_json: Callable[[PredictionRecord], dict]) -> dict:
    """``by_role`` (corrections of the window per ``corrected_by``; ``unattributed`` for those made before
    it was recorded), ``rejected`` (how many a reviewer rejected), ``newest`` (the latest, newest first);
    ``truncated`` when the scan bound stopped before the window's first day."""
    where = RecordFilter(model=window.model, version=window.version, corrected=True)
    by_role: dict[str, int] = {}
    newest: list[dict] = []
    rejected = scanned = 0
    cursor = None
    truncated = False
    while True:
        page = store.find(where, limit=100, cursor=cursor)
        for record in page.records:
            if record.day > window.last_day:
                continue
            if record.day < window.first_day:
                return _body(by_role, rejected, newest, truncated)
            scanned += 1
            by_role[kind_of(record)] = by_role.get(kind_of(record), 0) + 1
            rejected += record.correction_rejected
            if len(newest) < LISTED:
                newest.append(record_json(record))
        cursor = page.next_cursor
        if not cursor:
            break
        if scanned >= SCAN_BOUND:
            truncated = True
            break
    return _body(by_role, rejected, newest, truncated)


def _body(by_role: dict[str, int], rejected: int, newest: list[dict], truncated: bool) -> dict:
    return {"by_role": dict(sorted(by_role.items())), "rejected": rejected, "newest": newest, "truncated": truncated}
