"""Which corrections fine-tuning learns from: reviewers' and admins' all, rejected ones none, one anonymous
client at most its share; and load_corrections applies it to a real SQLite store with real images."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from records_helpers import make_record
from test_finetune import thick_pen_png

from digitrec.learning.finetune import load_corrections
from digitrec.records.record import PredictionRecord
from digitrec.records.sqlite_store import SQLiteStore
from digitrec.records.trust import client_cap, select_corrections
from digitrec.service.uploads import UploadStore


def corrected(i: int, by: str | None, client: str | None = None, rejected: bool = False) -> PredictionRecord:
    record = make_record(i).with_correction((i + 1) % 10, by, client)
    return dataclasses.replace(record, correction_rejected=rejected)


def test_one_client_gets_at_most_its_share_and_trusted_ones_are_all_used():
    flood = [corrected(i, "submitter", "flooder") for i in range(300)]
    others = [corrected(1000 + i, "submitter", f"client-{i // 10}") for i in range(300)]
    trusted = [corrected(2000 + i, role) for i, role in enumerate(["reviewer"] * 5 + ["admin"] * 3 + ["local"] * 2)]
    old = [corrected(3000 + i, None) for i in range(4)]  # made before provenance was recorded
    rejected = [corrected(4000 + i, "reviewer", rejected=True) for i in range(6)]
    uncorrected = [make_record(5000)]
    everything = flood + others + trusted + old + rejected + uncorrected
    picked = select_corrections(everything, 0.2)
    used_flood = [r for r in picked.records if r.corrected_client == "flooder"]
    assert len(used_flood) <= 0.2 * len(picked.records) and len(used_flood) == picked.client_cap
    assert len(picked.records) == len(used_flood) + 300 + 10 + 4  # every other correction is used
    assert picked.used_by_kind == {
        "submitter": len(used_flood) + 300,
        "reviewer": 5,
        "admin": 3,
        "local": 2,
        "unattributed": 4,
    }
    assert (picked.rejected, picked.capped, picked.clients) == (6, 300 - len(used_flood), 31)
    lineage = picked.lineage()
    assert lineage["capped_out"] == picked.capped and lineage["max_client_share"] == 0.2
    # which of the flooder's corrections stay does not depend on the order they arrive in
    shuffled = everything[:]
    random.Random(1).shuffle(shuffled)
    again = select_corrections(shuffled, 0.2)
    assert {r.request_id for r in again.records} == {r.request_id for r in picked.records}
    # a larger share lets more of it through
    assert len([r for r in select_corrections(everything, 0.5).records if r.corrected_client == "flooder"]) == 300


def test_the_cap_solves_share_of_the_total_used():
    assert client_cap(0, [300, *[10] * 30], 0.2) == 75  # 75 = 0.2 * (75 + 300)
    assert client_cap(0, [300], 0.2) == 0  # alone, an anonymous client teaches nothing
    assert client_cap(100, [300], 0.2) == 25  # 25 = 0.2 * (100 + 25)
    assert client_cap(0, [5] * 10, 0.2) == 5  # many small clients are not held back
    with pytest.raises(ValueError):
        select_corrections([], 0.0)


def test_load_corrections_skips_rejected_and_caps_one_client(tmp_path, mnist_test, digits_model):
    images, labels = mnist_test
    uploads = UploadStore(tmp_path, fsync=False)
    with SQLiteStore(tmp_path / "records.sqlite3") as store:
        for i in range(40):
            png = thick_pen_png(images[i])
            record = PredictionRecord.new(
                model_name="digits", model_version="2026-11-21", label=int(labels[i]), class_name="x",
                confidence=0.9, probabilities=[0.1] * 10, source="canvas",
            )  # fmt: skip
            path, digest = uploads.save(record.request_id, record.request_time, png)
            store.add(dataclasses.replace(record, image_path=path, image_sha256=digest), png)
            if i < 20:  # one anonymous client
                store.set_correction(record.request_id, int(labels[i]), "submitter", "one-client")
            elif i < 30:
                store.set_correction(record.request_id, int(labels[i]), "reviewer", "a-reviewer")
            else:
                store.set_correction(record.request_id, int(labels[i]), "submitter", f"client-{i}")
                if i >= 36:
                    assert store.reject_correction(record.request_id)
        loaded = load_corrections(store, "digits", lambda b: digits_model.prepare(b).tensor, tmp_path, 20)
    lineage = loaded.selection.lineage()
    # 10 reviewer + 6 other clients + c from the one client, with c <= 0.2 * (16 + c): c = 4
    assert lineage["used_by_kind"] == {"reviewer": 10, "submitter": 6 + 4}
    assert (lineage["rejected_skipped"], lineage["capped_out"], lineage["client_cap"]) == (4, 16, 4)
    assert loaded.total == 20 and np.isin(np.concatenate([loaded.y_train, loaded.y_holdout]), labels[:40]).all()
