"""The feedback loop end to end, shared by tests/test_finetune.py and benchmarks/bench_finetune_loop.py.

A handwriting style the shipped digits model misreads (``tests/finetune_styles.py``: dotted strokes,
bubble letters, continental ones and sevens, a felt marker) is drawn from MNIST *training* digits as
PNG uploads and sent to a real server on 127.0.0.1; every answer is corrected through the correction
API with the true label (a correction equal to the answer is a confirmation); ``digitrec finetune``
trains a new version from the records, the gate promotes it (or not), and the running service picks
the promotion up by polling. Fresh renderings of MNIST *test* digits (never sent, never trained on)
measure the style before and after. Run again on the same folder with another style, it learns styles
one after another: the earlier styles' corrections stay in the records and are used again.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from finetune_styles import STYLES

REPO = Path(__file__).resolve().parent.parent
PEN_PX = 21
SCALE = 4


def sqlite_env() -> dict[str, str]:
    """The environment for ``digitrec finetune``: the service above records into SQLite (its config has no
    Cassandra settings), so the command must read SQLite too, even when the suite runs with Cassandra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSANDRA_")}
    return {**env, "PYTHONPATH": str(REPO)}


def thick_pen_png(digit28: np.ndarray) -> bytes:
    """An MNIST digit redrawn with a very thick round pen: dark ink on white paper, 152x152 PNG."""
    big = cv2.resize(digit28, (28 * SCALE, 28 * SCALE), interpolation=cv2.INTER_CUBIC)
    ink = (big > 100).astype(np.uint8) * 255
    ink = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (PEN_PX, PEN_PX)))
    paper = cv2.copyMakeBorder(255 - ink, 20, 20, 20, 20, cv2.BORDER_CONSTANT, value=255)
    ok, buffer = cv2.imencode(".png", paper)
    assert ok
    return buffer.tobytes()


def style_readings(recognizer: Any, style: str, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, share refused as not a digit) of ``recognizer`` on ``style`` renderings of ``images``."""
    predictions = recognizer.predict_batch([STYLES[style].png(d, label) for d, label in zip(images, labels)])
    right = np.array([p.label for p in predictions]) == labels
    return float(np.mean(right)), float(np.mean([p.in_domain is False for p in predictions]))


def fresh_digits(style: str, labels: np.ndarray, count: int) -> np.ndarray:
    """The MNIST *test* digits that measure ``style`` (fixed per style, never sent)."""
    return STYLES[style].pick(labels, count, np.random.default_rng([1, sorted(STYLES).index(style)]))


def send_and_correct(
    base_url: str,
    images: np.ndarray,
    labels: np.ndarray,
    http_request: Any,
    render: Callable[[np.ndarray, int], bytes] | None = None,
) -> dict[str, int]:
    """POST each image, drawn by ``render`` (default: the thick pen), to /api/v1/predict, then POST its
    true label to the correction API."""
    render = render or (lambda digit, label: thick_pen_png(digit))
    counts = {"sent": 0, "misread": 0, "corrected": 0}
    for digit, label in zip(images, labels):
        body, boundary = _multipart(render(digit, int(label)))
        reply = http_request(
            "POST",
            f"{base_url}/api/v1/predict?model=digits&source=upload",
            body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert reply.status == 200, reply.body[:300]
        prediction = reply.json()["predictions"][0]
        record_id = prediction.get("request_id") or prediction["id"]
        counts["sent"] += 1
        counts["misread"] += int(prediction["label"] != int(label))
        fixed = http_request(
            "POST",
            f"{base_url}/api/v1/records/{record_id}/correction",
            json.dumps({"label": int(label)}).encode(),
            {"Content-Type": "application/json"},
        )
        assert fixed.status == 200, fixed.body[:300]
        assert fixed.json()["corrected_label"] == int(label)
        counts["corrected"] += 1
    return counts


def _multipart(png: bytes) -> tuple[bytes, str]:
    boundary = "finetune-loop-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="thick.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + png + f"\r\n--{boundary}--\r\n".encode(), boundary


def wait_for_version(base_url: str, version: str, http_request: Any, timeout: float = 60.0) -> float:
    """Seconds until /api/v1/predict answers with ``version`` (the running service swapped to it)."""
    started = time.perf_counter()
    probe = np.zeros((28, 28), np.uint8)
    probe[6:22, 12:16] = 255  # a plain 1
    body, boundary = _multipart(thick_pen_png(probe))
    while time.perf_counter() - started < timeout:
        reply = http_request(
            "POST", f"{base_url}/api/v1/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        if reply.status == 200 and reply.json()["predictions"][0]["model_version"] == version:
            return time.perf_counter() - started
        time.sleep(0.5)
    raise AssertionError(f"the service did not switch to version {version} within {timeout} s")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_loop(
    work: Path,
    data: Path | None,
    style: str,
    images: int,
    fresh: int,
    finetune_args: Sequence[str] = (),
    measure: Sequence[str] = (),
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """One round in ``work`` (steps 1-5 of the benchmark's docstring) for ``style``; returns every figure.

    ``measure``: more styles whose fresh images are read by the parent and the new version (the styles
    learnt in earlier rounds, to see whether they are kept). ``finetune_args`` go to ``digitrec finetune``.
    """
    from service_helpers import http_request, serve_app

    from digitrec.learning import datasets
    from digitrec.model import versions
    from digitrec.model.recognizer import DigitRecognizer
    from digitrec.service import ServiceConfig, create_app

    data_dir, models_dir = work / "data", work / "models"
    data_dir.mkdir(parents=True, exist_ok=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train = datasets.load_split("mnist", "train", data)
    x_test, y_test = datasets.load_split("mnist", "test", data)
    sent = STYLES[style].pick(y_train, images, np.random.default_rng([seed, sorted(STYLES).index(style)]))
    styles = [style, *[m for m in measure if m != style]]
    fresh_idx = {name: fresh_digits(name, y_test, fresh) for name in styles}

    parent = DigitRecognizer.load("digits", models_dir=models_dir)
    read_before = {name: style_readings(parent, name, x_test[i], y_test[i]) for name, i in fresh_idx.items()}
    before = {name: accuracy for name, (accuracy, _) in read_before.items()}
    log(f"parent {parent.version}: {style} accuracy {100 * before[style]:.2f}% on {fresh} fresh images")

    config = ServiceConfig(
        data_dir=data_dir, models_dir=models_dir, models=("digits",), lazy_models=(), model_poll_seconds=1.0
    )
    app = create_app(config)
    result: dict = {"style": style, "images_sent": images, "fresh_images": fresh, "finetune_args": list(finetune_args)}
    render = STYLES[style].png
    try:
        with serve_app(app) as url:
            t0 = time.perf_counter()
            counts = send_and_correct(url, x_train[sent], y_train[sent], http_request, render)
            result.update(counts, send_seconds=round(time.perf_counter() - t0, 1))
            log(f"sent {counts['sent']} images over HTTP, {counts['misread']} misread, {counts['corrected']} corrected")

            command = [
                sys.executable, "-m", "digitrec", "finetune", "digits", "--data-dir", str(data_dir),
                "--models-dir", str(models_dir), "--seed", str(seed), "--json", "--quiet", *finetune_args,
            ]  # fmt: skip
            if data is not None:
                command += ["--datasets", str(data)]
            t0, cpu0, load0 = time.perf_counter(), children_cpu_seconds(), os.getloadavg()[0]
            done = subprocess.run(command, capture_output=True, text=True, env=sqlite_env())
            if done.returncode != 0:
                raise RuntimeError(f"digitrec finetune failed ({done.returncode}):\n{done.stderr[-3000:]}")
            finetuned = json.loads(done.stdout)
            result["finetune"] = finetuned
            result["finetune_seconds"] = round(time.perf_counter() - t0, 1)
            result["finetune_cpu_seconds"] = round(children_cpu_seconds() - cpu0, 1)
            result["load_average"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
            log(f"finetune: {json.dumps(finetuned)}")
            if finetuned["promoted"]:
                result["swap_seconds"] = round(wait_for_version(url, finetuned["version"], http_request), 1)
                log(f"the running service answers with {finetuned['version']} after {result['swap_seconds']} s")
                # the served model on fresh styled images, over HTTP (a sample: each is one request)
                sample = fresh_idx[style][:200]
                right = 0
                for digit, label in zip(x_test[sample], y_test[sample]):
                    reply = http_request("POST", f"{url}/api/v1/predict", render(digit, int(label)),
                                         {"Content-Type": "image/png"})  # fmt: skip
                    prediction = reply.json()["predictions"][0]
                    assert prediction["model_version"] == finetuned["version"]
                    right += int(prediction["label"] == int(label))
                result["served_http_accuracy_sample"] = right / len(sample)
    finally:
        app.close()

    child = DigitRecognizer.load(versions.get_version("digits", result["finetune"]["version"], models_dir).path)
    read_after = {name: style_readings(child, name, x_test[i], y_test[i]) for name, i in fresh_idx.items()}
    after = {name: accuracy for name, (accuracy, _) in read_after.items()}
    result.update(
        parent_version=parent.version,
        style_accuracy_before=before[style],
        style_accuracy_after=after[style],
        style_errors_before=1 - before[style],
        style_errors_after=1 - after[style],
        error_ratio=(1 - after[style]) / max(1e-9, 1 - before[style]),
        mnist_test_before=result["finetune"]["parent_test_accuracy"],
        mnist_test_after=result["finetune"]["test_accuracy"],
        styles_before=before,
        styles_after=after,
        style_refused_before=read_before[style][1],  # by the refusal head, as not a digit
        style_refused_after=read_after[style][1],
    )
    return result
