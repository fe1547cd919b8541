"""Corrected readings as training data: each digit of the corrected text becomes a labelled digit when the
current segmentation, reading the stored image again, finds as many digits; otherwise it is skipped and
counted. The reading is done by the real recognizer on real composed numbers in a real SQLite store."""

from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np
import pytest

from digitrec.learning.finetune import is_held_out, load_corrections
from digitrec.records.record import Mark, PredictionRecord
from digitrec.records.sqlite_store import SQLiteStore

SIDE = 112


def number_png(images: np.ndarray) -> bytes:
    """MNIST digits well apart in a row, dark ink on white paper."""
    gap = 40
    paper = np.full((SIDE + 2 * gap, len(images) * (SIDE + gap) + gap), 255, np.uint8)
    for n, image in enumerate(images):
        x = gap + n * (SIDE + gap)
        paper[gap : gap + SIDE, x : x + SIDE] = 255 - cv2.resize(image, (SIDE, SIDE))
    ok, buffer = cv2.imencode(".png", paper)
    assert ok
    return buffer.tobytes()


def corrected_reading(store, png: bytes, read_as: str, corrected: str) -> PredictionRecord:
    record = PredictionRecord.new(
        model_name="digits", model_version="test", label=int(read_as[0]), class_name=read_as[0],
        confidence=0.8, probabilities=[0.1] * 10, source="upload",
    )  # fmt: skip
    marks = [Mark(label=int(c), confidence=0.8, box=(i * 150, 0, SIDE, SIDE)) for i, c in enumerate(read_as)]
    record = dataclasses.replace(
        record, kind="reading", text=read_as, digits=marks, image_sha256=hashlib.sha256(png).hexdigest()
    )
    store.add(record, png)
    assert store.set_correction(record.request_id, corrected)
    return record


def test_a_corrected_readings_digits_become_labelled_digits(tmp_path, mnist_test, digits_model):
    if not hasattr(digits_model, "read"):
        pytest.skip("DigitRecognizer.read (reading a row of digits) is not available in this checkout")
    images, labels = mnist_test
    picks = [[0, 1, 2], [3, 4], [5, 6, 7, 8], [9, 11]]
    with SQLiteStore(tmp_path / "records.sqlite3") as store:
        used = []
        for pick in picks:
            truth = "".join(str(int(labels[i])) for i in pick)
            png = number_png(images[pick])
            # the model's reading had its first digit wrong; the user typed the truth
            wrong = str((int(truth[0]) + 1) % 10) + truth[1:]
            used.append((corrected_reading(store, png, wrong, truth), truth, png))
        # a correction with one digit more than the image holds cannot be paired digit by digit
        short = number_png(images[[12, 13]])
        corrected_reading(store, short, "00", "123")
        loaded = load_corrections(
            store, "digits", lambda b: digits_model.prepare(b).tensor, tmp_path, 20, read=digits_model.read
        )
    assert (loaded.readings_used, loaded.readings_skipped) == (len(picks), 1)
    assert loaded.reading_digits == sum(len(p) for p in picks)
    assert any("reading it again finds 2 digit(s), the corrected text '123' has 3" in s for s in loaded.skipped)
    expected = {False: [], True: []}
    for _record, truth, png in used:  # every digit of one reading lands on its image's side of the split
        expected[is_held_out(hashlib.sha256(png).hexdigest())].extend(int(c) for c in truth)
    assert sorted(loaded.y_train.tolist()) == sorted(expected[False])
    assert sorted(loaded.y_holdout.tolist()) == sorted(expected[True])
    both = np.concatenate([loaded.x_train, loaded.x_holdout])
    assert both.shape == (loaded.reading_digits, 784) and 0.0 <= both.min() and both.max() <= 1.0


def test_a_corrected_reading_without_a_reader_is_skipped_and_counted(tmp_path, mnist_test, digits_model):
    images, _labels = mnist_test
    with SQLiteStore(tmp_path / "records.sqlite3") as store:
        corrected_reading(store, number_png(images[[0, 1]]), "72", "72")
        digit = PredictionRecord.new(
            model_name="digits", model_version="test", label=5, class_name="5", confidence=0.9,
            probabilities=[0.1] * 10, source="upload",
        )  # fmt: skip
        png = number_png(images[[15]])
        digit = dataclasses.replace(digit, image_sha256=hashlib.sha256(png).hexdigest())
        store.add(digit, png)
        store.set_correction(digit.request_id, 5)
        loaded = load_corrections(store, "digits", lambda b: digits_model.prepare(b).tensor, tmp_path, 20)
    assert loaded.total == 1 and loaded.readings_skipped == 1 and loaded.readings_used == 0
    assert any(s.endswith("no reader") for s in loaded.skipped)
