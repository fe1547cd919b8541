"""The yardstick for a request's cost: the work a prediction request cannot avoid, in the calling thread.

``DigitRecognizer.predict`` on the request's PNG, then one record inserted with the PNG's bytes and
committed, into a SQLite file with the service's own schema (its filter indexes, hourly tally trigger
and image table): the image is kept once, with its record, as the service keeps it. ``bench_http.py``
runs it in a process of its own; ``bench_request_cost.py`` beside the in-process request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from digitrec.records import sqlite_store
from digitrec.records.record import PredictionRecord


def open_database(path: Path) -> sqlite3.Connection:
    """A new SQLite file with the service's schema, indexes and tally triggers."""
    conn = sqlite_store.connect(path)
    conn.executescript(sqlite_store.SCHEMA)
    sqlite_store.migrate(conn)
    return conn


def record_of(recognizer: Any, prediction: Any) -> PredictionRecord:
    """The record the service would store for ``prediction`` of an uploaded ``digit.png``."""
    return PredictionRecord.new(
        model_name="digits",
        model_version=str(recognizer.version),
        label=prediction.label,
        class_name=str(prediction.name),
        confidence=prediction.confidence,
        probabilities=prediction.probabilities,
        source="api",
        file_name="digit.png",
    )


def insert(conn: sqlite3.Connection, record: PredictionRecord, image: bytes) -> None:
    """One record and its image, committed together on their own."""
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(sqlite_store._UPSERT, sqlite_store._row(record))
    conn.execute(sqlite_store._UPSERT_IMAGE, (str(record.request_id), len(image), image))
    conn.execute("COMMIT")


def predict_and_insert(recognizer: Any, conn: sqlite3.Connection, png: bytes) -> None:
    """The whole baseline: predict the PNG and store its record with the PNG."""
    insert(conn, record_of(recognizer, recognizer.predict(png)), png)
