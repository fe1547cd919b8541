"""Which corrections fine-tuning may learn from, by who made them (``PredictionRecord.corrected_by``).

* A correction a reviewer rejected is skipped.
* Corrections by a reviewer, an admin, the person at an open laptop service (``local``), and corrections
  without provenance (made before it was recorded, or written into the store directly, which only
  whoever holds the data volume can) are trusted and all used.
* Corrections by submitters (anonymous clients holding their record's correction key) are grouped by
  client (the salted hash of its address). One client contributes at most ``max_client_share`` of the
  corrections used: a client with more keeps a fixed, content-independent subset (ordered by a hash
  of the record id, so the order in which it sent them does not decide which stay).

So one client flooding the service with wrong corrections of its own predictions moves at most that
share of the training corrections, however many it sends.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable

from digitrec.records.record import TRUSTED_CORRECTION_ROLES, PredictionRecord

MAX_CLIENT_SHARE = 0.2
UNATTRIBUTED = "unattributed"


@dataclasses.dataclass
class CorrectionSelection:
    """The corrections to learn from, and what was left out and why."""

    records: list[PredictionRecord]
    used_by_kind: dict[str, int]
    rejected: int = 0
    capped: int = 0  # submitter corrections left out by the per-client cap
    clients: int = 0  # anonymous clients whose corrections are used
    client_cap: int | None = None  # most corrections one anonymous client contributes (None: no submitters)
    max_client_share: float = MAX_CLIENT_SHARE

    def lineage(self) -> dict:
        """What model.json records about the corrections a version learned from."""
        return {
            "used_by_kind": dict(sorted(self.used_by_kind.items())),
            "rejected_skipped": self.rejected,
            "capped_out": self.capped,
            "anonymous_clients": self.clients,
            "client_cap": self.client_cap,
            "max_client_share": self.max_client_share,
        }


def kind_of(record: PredictionRecord) -> str:
    return record.corrected_by or UNATTRIBUTED


def client_cap(trusted: int, per_client: list[int], share: float) -> int:
    """The largest count ``c`` with ``c <= share * (trusted + sum(min(n, c) for n in per_client))``: one
    client may contribute up to ``c`` corrections, and then holds at most ``share`` of those used."""
    counts = sorted(per_client)
    best, below, i = 0, 0, 0  # ``below``: the sum of the counts smaller than ``cap``, ``i`` how many
    for cap in range(1, (counts[-1] if counts else 0) + 1):
        while i < len(counts) and counts[i] < cap:
            below += counts[i]
            i += 1
        if cap <= share * (trusted + below + cap * (len(counts) - i)) + 1e-9:
            best = cap
    return best


def select_corrections(
    records: Iterable[PredictionRecord], max_client_share: float = MAX_CLIENT_SHARE
) -> CorrectionSelection:
    """The corrected records fine-tuning may use (in the order given), following the rules above."""
    if not 0.0 < max_client_share <= 1.0:
        raise ValueError(f"max_client_share must be above 0 and at most 1, not {max_client_share}")
    corrected = [r for r in records if r.correction is not None]
    rejected = [r for r in corrected if r.correction_rejected]
    kept = [r for r in corrected if not r.correction_rejected]
    trusted = [r for r in kept if r.corrected_by is None or r.corrected_by in TRUSTED_CORRECTION_ROLES]
    by_client: dict[str, list[PredictionRecord]] = {}
    for record in kept:
        if record.corrected_by is not None and record.corrected_by not in TRUSTED_CORRECTION_ROLES:
            by_client.setdefault(record.corrected_client or "", []).append(record)
    cap = client_cap(len(trusted), [len(v) for v in by_client.values()], max_client_share) if by_client else None
    chosen: set = {r.request_id for r in trusted}
    capped = 0
    for client_records in by_client.values():
        ordered = sorted(client_records, key=lambda r: hashlib.sha256(r.request_id.bytes).digest())
        chosen.update(r.request_id for r in ordered[:cap])
        capped += max(0, len(ordered) - (cap or 0))
    used = [r for r in kept if r.request_id in chosen]
    counts: dict[str, int] = {}
    for record in used:
        counts[kind_of(record)] = counts.get(kind_of(record), 0) + 1
    return CorrectionSelection(
        records=used,
        used_by_kind=counts,
        rejected=len(rejected),
        capped=capped,
        clients=sum(1 for v in by_client.values() if cap),
        client_cap=cap,
        max_client_share=max_client_share,
    )
