"""Where a prediction request's CPU goes, step by step, against the baseline, in one process.

    python benchmarks/bench_request_cost.py [--calls 300] [--rounds 5] [--json]

No HTTP server and no threads: the WSGI app (``create_app`` with the defaults: SQLite records with
their images, digits model, no upload files) is called directly with the same multipart PNG that
``bench_http.py`` sends, so what is measured is the application's own work. Printed, as CPU ms per
call (median of ``--rounds`` interleaved rounds of ``--calls`` calls each):

* ``request``: one whole ``POST /api/v1/predict`` through the app;
* ``baseline``: ``DigitRecognizer.predict`` on the same PNG plus one insert of the record with the PNG's
  bytes, committed into a SQLite file with the service's own schema (``baseline.py``), the yardstick;
* a ladder from the baseline to the request, each rung a whole prediction that adds one part of the
  service's work to the rung before: ``+ batcher`` (the model call through the micro-batcher),
  ``+ store`` (the record, with the request's id, hashes and correction key, written through the
  service's store instead of one plain insert), ``+ preview, look`` (the 28x28 preview PNG and the
  look for several digits), then ``predictor`` (``Predictor.predict``, what the route calls) and
  ``request``. The differences between rungs are what each part costs where it runs, caches shared
  with the rest of a request;
* each step of the request on its own, repeated in a tight loop: reading the form, decoding and
  preprocessing, the model call through the micro-batcher, the 28x28 preview PNG, the store's durable
  write of record + image, the JSON answer, the metrics, and the upload file a service keeps only
  with ``DIGITREC_KEEP_UPLOAD_FILES=1``.

A step in a tight loop runs with warm caches; inside a request the steps evict each other's data, so
``request`` is more than the sum of its steps (the ladder shows by how much, and where). The ratio
request / baseline is the one BENCHMARKS.md bounds (at most 1.15; the HTTP server's share comes on
top, and ``bench_servers.py`` measures it).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from werkzeug.test import EnvironBuilder  # noqa: E402

from benchmarks import baseline  # noqa: E402
from benchmarks.bench_http import digit_png, multipart  # noqa: E402
from digitrec.records.record import PredictionRecord, new_request_id, utc_now_ms  # noqa: E402
from digitrec.service.app import create_app  # noqa: E402
from digitrec.service.config import ServiceConfig  # noqa: E402
from digitrec.service.inputs import images_from_request  # noqa: E402
from digitrec.service.multipart import ServiceRequest  # noqa: E402
from digitrec.service.number_hint import several_digits  # noqa: E402
from digitrec.service.predictor import ImageInput, Outcome, new_correction_key  # noqa: E402
from digitrec.service.responses import json_response  # noqa: E402
from digitrec.service.uploads import encode_png  # noqa: E402


def steps(data_dir: Path) -> tuple[dict[str, Callable[[], object]], Callable[[], None]]:
    """The measured callables, and a function that closes what they opened."""
    png = digit_png()
    body, headers = multipart(png)
    config = ServiceConfig.from_env(dict(os.environ), data_dir=data_dir, models=("digits",), model_poll_seconds=0)
    app = create_app(config)
    ctx = app.context
    model = ctx.models.get("digits")
    recognizer = model.recognizer
    environ = EnvironBuilder(path="/api/v1/predict", method="POST", data=body, headers=headers).get_environ()

    def fresh_environ() -> dict:
        return {**environ, "wsgi.input": io.BytesIO(body)}

    statuses: list[str] = []

    def request() -> None:
        b"".join(app(fresh_environ(), lambda status, headers, exc_info=None: statuses.append(status)))
        if not statuses.pop().startswith("200"):
            raise RuntimeError("the service did not answer 200")

    conn = baseline.open_database(data_dir / "baseline.sqlite3")

    def record(prediction) -> PredictionRecord:
        return baseline.record_of(recognizer, prediction)

    prepared = recognizer.prepare(png, config.max_pixels)
    batch = prepared.tensor.reshape(1, 784)
    prediction = recognizer.prediction_from_proba(recognizer.predict_scores(batch)[0])
    answered = record(prediction)
    metrics = ctx.metrics

    def store_write() -> None:
        r = record(prediction)
        ctx.store.add_many([r], {r.request_id: png})

    def answer() -> None:
        outcome = Outcome(answered, encode_png(prepared.preview), 1.0)
        document = {"model": "digits", "model_version": answered.model_version, "elapsed_ms": 1.0}
        response = json_response({**document, "predictions": [outcome.to_json()]})
        b"".join(response(fresh_environ(), lambda *a: None))

    def count() -> None:
        metrics.requests.labels(method="POST", endpoint="api.predict", status="200").inc()
        metrics.latency.labels(endpoint="api.predict").observe(0.003)
        metrics.predictions.labels(model="digits", label="7").inc()

    def rung(batcher: bool, store: bool, preview: bool) -> Callable[[], None]:
        def predict_and_keep() -> None:
            prepared = recognizer.prepare(png, config.max_pixels)
            x = prepared.tensor.reshape(1, 784)
            scores = model.batcher.submit(x).result(5) if batcher else recognizer.predict_scores(x)
            prediction = recognizer.prediction_from_scores(scores[0])
            if not store:
                baseline.insert(conn, record(prediction), png)
                return
            r = dataclasses.replace(
                record(prediction),
                image_sha256=hashlib.sha256(png).hexdigest(),
                correction_key_sha256=new_correction_key()[1],
            )
            ctx.store.add_many([r], {r.request_id: png})
            if preview:
                encode_png(prepared.preview)
                several_digits(recognizer, prepared.preview, prepared.image)

        return predict_and_keep

    images = [ImageInput(png, "digit.png")]
    measured: dict[str, Callable[[], object]] = {
        "baseline": lambda: baseline.predict_and_insert(recognizer, conn, png),
        "  + batcher": rung(batcher=True, store=False, preview=False),
        "  + store": rung(batcher=True, store=True, preview=False),
        "  + preview, look": rung(batcher=True, store=True, preview=True),
        "  predictor": lambda: ctx.predictor.predict(images, model_name="digits", source="api", look_for_numbers=True),
        "request": request,
        "read form": lambda: images_from_request(ServiceRequest(fresh_environ())),
        "decode + preprocess": lambda: recognizer.prepare(png, config.max_pixels),
        "model call (batcher)": lambda: model.batcher.submit(batch).result(5),
        "upload file (opt-in)": lambda: ctx.uploads.save(new_request_id(), utc_now_ms(), png),
        "preview PNG": lambda: encode_png(prepared.preview),
        "store record + image": store_write,
        "baseline's insert": lambda: baseline.insert(conn, record(prediction), png),
        "JSON answer": answer,
        "metrics": count,
    }

    def close() -> None:
        app.close()
        conn.close()

    return measured, close


def measure(measured: dict[str, Callable[[], object]], calls: int, rounds: int) -> dict[str, list[float]]:
    """CPU ms per call of each callable, one value per round; the rounds interleave the callables."""
    for fn in measured.values():  # warm-up
        for _ in range(max(20, calls // 5)):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in measured}
    for _ in range(rounds):
        for name, fn in measured.items():
            started = time.process_time_ns()
            for _ in range(calls):
                fn()
            samples[name].append((time.process_time_ns() - started) / calls / 1e6)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per step and round (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        measured, close = steps(Path(tmp))
        try:
            samples = measure(measured, args.calls, args.rounds)
        finally:
            close()
    result = {name: round(statistics.median(values), 4) for name, values in samples.items()}
    # the median of each round's own ratio: both sides measured seconds apart, under the same load
    result_ratio = round(statistics.median(r / b for r, b in zip(samples["request"], samples["baseline"])), 3)
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"cpu_ms": result, "request_over_baseline": result_ratio, "load_average": load}))
        return 0
    print(f"CPU ms per call, median of {args.rounds} rounds x {args.calls} calls (load average {load:.2f})")
    for name, value in result.items():
        print(f"  {name:24s} {value:7.3f}")
    print(f"request / baseline: {result_ratio:.2f} (median of the rounds' own ratios)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
