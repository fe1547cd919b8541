"""The app a user would write in twenty lines: FastAPI + uvicorn around ``DigitRecognizer.predict``.

    DIGITREC_PEER_DIR=/tmp/peer uvicorn benchmarks.peers.fastapi_peer:app --port 8000 [--workers 2]

The yardstick of ``bench_http.py --peer``. A plain ``def`` handler (FastAPI runs it in its thread
pool), the model loaded once at import and warmed, the upload written to a file, one row inserted into
SQLite. No handicap: the SQLite file is in WAL mode with ``synchronous=NORMAL``, as the service's
records file is, and the connection is shared (one insert at a time under a lock) instead of being
opened per request.
"""

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from fastapi import FastAPI, UploadFile

from digitrec import DigitRecognizer

DATA = Path(os.environ.get("DIGITREC_PEER_DIR", "peer-data"))
(DATA / "uploads").mkdir(parents=True, exist_ok=True)
db = sqlite3.connect(DATA / "predictions.sqlite3", check_same_thread=False, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute(
    "CREATE TABLE IF NOT EXISTS predictions (id TEXT PRIMARY KEY, time REAL, file TEXT, label INTEGER, confidence REAL)"
)
lock = threading.Lock()

recognizer = DigitRecognizer.load("digits", models_dir=os.environ.get("DIGITREC_MODELS_DIR") or None)
warm = np.zeros((112, 112), np.uint8)
warm[20:92, 50:62] = 255  # a "1"
for _ in range(20):  # warm: the first calls build TensorFlow's graph and caches
    recognizer.predict(warm)

app = FastAPI()


@app.post("/api/v1/predict")
def predict(file: UploadFile):
    data = file.file.read()
    prediction = recognizer.predict(data)
    request_id = str(uuid.uuid4())
    path = DATA / "uploads" / f"{request_id}.png"
    path.write_bytes(data)
    with lock:
        db.execute(
            "INSERT INTO predictions VALUES (?, ?, ?, ?, ?)",
            (request_id, time.time(), str(path), prediction.label, prediction.confidence),
        )
    return {"id": request_id, "label": prediction.label, "confidence": prediction.confidence}
