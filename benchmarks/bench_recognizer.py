"""Recognizer figures: shipped-model accuracy, robustness to paper renderings, latency, throughput.

    python benchmarks/bench_recognizer.py --data-dir ../shared/datasets [--json] [--paper-limit N]

Prints a table (or JSON) of:
- test accuracy of the shipped `digits` (MNIST) and `fashion` (Fashion-MNIST) models on raw tensors;
- MNIST test digits re-rendered as paper images (dark ink on light paper, 4-12x, shifted, some in
  coloured ink, PNG- or JPEG-encoded) recognised through `predict`, as a share of the raw-tensor rate;
- `predict(PNG bytes)` latency percentiles for a 280x280 transparent canvas PNG;
- `predict_batch` throughput at batch 256, for 28x28 arrays and for 280x280 canvas PNGs;
- `predict_batch` on the raw 28x28 test images (already in the model's format) against `predict_proba`
  on the same tensors, for both models (the pipeline should leave such images as they are);
- training time and epochs from each model's model.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from imaging import canvas_stroke, jpeg, on_paper, png  # noqa: E402

from digitrec.learning import datasets  # noqa: E402
from digitrec.model.inputs import to_inputs  # noqa: E402
from digitrec.model.recognizer import DigitRecognizer  # noqa: E402

INKS = [(20, 20, 20), (170, 60, 10), (30, 30, 200), (60, 110, 20)]  # black, blue, red, green (BGR)
PAPERS = [(245, 245, 240), (255, 255, 255), (215, 225, 230)]


def raw_accuracy(recognizer: DigitRecognizer, images: np.ndarray, labels: np.ndarray) -> float:
    proba = np.concatenate(
        [recognizer.predict_proba(to_inputs(images[i : i + 1000])) for i in range(0, len(images), 1000)]
    )
    return float(np.mean(proba.argmax(1) == labels))


def paper_image(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    scale = int(rng.integers(4, 13))
    ink = INKS[int(rng.integers(len(INKS)))] if rng.random() < 0.5 else INKS[0]
    paper = PAPERS[int(rng.integers(len(PAPERS)))]
    offset = (int(rng.integers(-40, 41)), int(rng.integers(-40, 41)))
    image = on_paper(digit, scale=scale, ink_bgr=ink, paper_bgr=paper, margin=int(rng.integers(10, 60)), offset=offset)
    return jpeg(image, quality=88) if rng.random() < 0.3 else png(image)


def paper_accuracy(
    recognizer: DigitRecognizer, images: np.ndarray, labels: np.ndarray, limit: int
) -> tuple[float, float]:
    rng = np.random.default_rng(2026)
    idx = np.arange(len(images)) if limit <= 0 else rng.choice(len(images), limit, replace=False)
    correct = 0
    for i in idx:
        correct += recognizer.predict(paper_image(images[i], rng)).label == labels[i]
    raw = raw_accuracy(recognizer, images[idx], labels[idx])
    return correct / len(idx), raw


def canonical_accuracy(recognizer: DigitRecognizer, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of ``predict_batch`` on raw 28x28 dataset images (through the whole pipeline)."""
    labels_out = []
    for start in range(0, len(images), 1000):
        labels_out += [p.label for p in recognizer.predict_batch(list(images[start : start + 1000]))]
    return float(np.mean(np.array(labels_out) == labels))


def latency_ms(recognizer: DigitRecognizer, payloads: list[bytes], repeats: int) -> dict[str, float]:
    times = []
    for k in range(repeats):
        data = payloads[k % len(payloads)]
        t0 = time.perf_counter()
        recognizer.predict(data)
        times.append((time.perf_counter() - t0) * 1000)
    arr = np.array(times[len(times) // 10 :])  # drop warm-up
    return {
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
    }


def batch_throughput(recognizer: DigitRecognizer, inputs: list, batch: int, rounds: int) -> float:
    recognizer.predict_batch(inputs[:batch])  # warm the batch-size kernels
    t0 = time.perf_counter()
    for r in range(rounds):
        start = (r * batch) % (len(inputs) - batch)
        recognizer.predict_batch(inputs[start : start + batch])
    return batch * rounds / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=os.environ.get("DIGITREC_DATASETS", REPO.parent / "shared" / "datasets")
    )
    parser.add_argument("--paper-limit", type=int, default=0, help="paper renderings to test (0 = all 10,000)")
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    digits, fashion = DigitRecognizer.load("digits"), DigitRecognizer.load("fashion")
    x_digits, y_digits = datasets.load_split("mnist", "test", args.data_dir)
    x_fashion, y_fashion = datasets.load_split("fashion", "test", args.data_dir)
    results: dict = {"cpu_count": os.cpu_count()}
    results["digits_test_accuracy"] = raw_accuracy(digits, x_digits, y_digits)
    results["fashion_test_accuracy"] = raw_accuracy(fashion, x_fashion, y_fashion)
    results["precision"] = digits.precision
    if digits.precision != "float32":  # the same checkpoints run exactly, for comparison
        results["digits_test_accuracy_float32"] = raw_accuracy(
            DigitRecognizer.load("digits", precision="float32"), x_digits, y_digits
        )
        results["fashion_test_accuracy_float32"] = raw_accuracy(
            DigitRecognizer.load("fashion", precision="float32"), x_fashion, y_fashion
        )
    results["digits_predict_batch_raw28_accuracy"] = canonical_accuracy(digits, x_digits, y_digits)
    results["fashion_predict_batch_raw28_accuracy"] = canonical_accuracy(fashion, x_fashion, y_fashion)
    paper, raw = paper_accuracy(digits, x_digits, y_digits, args.paper_limit)
    results["paper_accuracy"], results["paper_raw_accuracy"] = paper, raw
    results["paper_relative"] = paper / raw

    canvases = [png(canvas_stroke(x_digits[i])) for i in range(200)]
    results["predict_png_latency_ms"] = latency_ms(digits, canvases, args.repeats)
    arrays = [x_digits[i] for i in range(4096)]
    canvas_inputs = [png(canvas_stroke(x_digits[i])) for i in range(1024)]
    results["predict_batch_256_arrays_per_s"] = batch_throughput(digits, arrays, 256, 40)
    results["predict_batch_256_canvas_png_per_s"] = batch_throughput(digits, canvas_inputs, 256, 8)
    x = to_inputs(x_digits[:256])
    digits.predict_proba(x)
    t0 = time.perf_counter()
    for _ in range(40):
        digits.predict_proba(x)
    results["predict_proba_256_per_s"] = 256 * 40 / (time.perf_counter() - t0)
    for name, rec in (("digits", digits), ("fashion", fashion)):
        training = rec.metadata["training"]
        results[f"{name}_training"] = {"epochs": training["epochs"], "seconds": training["seconds"]}
    results["opencv_threads"] = cv2.getNumThreads()

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    lat = results["predict_png_latency_ms"]
    exact = [
        (f"{name}: test accuracy at float32", f"{100 * results[f'{name}_test_accuracy_float32']:.2f} %", "")
        for name in ("digits", "fashion")
        if f"{name}_test_accuracy_float32" in results
    ]
    rows = [
        ("digits: MNIST test accuracy (raw tensors)", f"{100 * results['digits_test_accuracy']:.2f} %", ">= 99.65 %"),
        ("fashion: Fashion-MNIST test accuracy", f"{100 * results['fashion_test_accuracy']:.2f} %", ">= 93.5 %"),
        *(
            (
                f"{name}: predict_batch on raw 28x28 test images",
                f"{100 * results[f'{name}_predict_batch_raw28_accuracy']:.2f} % vs "
                f"{100 * results[f'{name}_test_accuracy']:.2f} % predict_proba",
                "within 0.05 points",
            )
            for name in ("digits", "fashion")
        ),
        ("inference precision (auto)", results["precision"], ""),
        *exact,
        (
            f"paper renderings through predict ({'all' if args.paper_limit <= 0 else args.paper_limit})",
            f"{100 * paper:.2f} % vs {100 * raw:.2f} % raw = {100 * results['paper_relative']:.2f} %",
            ">= 99 % of raw",
        ),
        (
            "predict(PNG bytes, 280x280 canvas) p50 / p90 / p99",
            f"{lat['p50']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f} ms",
            "p50 <= 2 ms",
        ),
        (
            "predict_batch(256 x 28x28 arrays)",
            f"{results['predict_batch_256_arrays_per_s']:,.0f} images/s",
            ">= 6,000/s",
        ),
        (
            "predict_batch(256 x 280x280 canvas PNGs)",
            f"{results['predict_batch_256_canvas_png_per_s']:,.0f} images/s",
            "",
        ),
        ("predict_proba(256 x 784) network only", f"{results['predict_proba_256_per_s']:,.0f} images/s", ""),
        (
            "digits training",
            f"{results['digits_training']['epochs']} epochs, {results['digits_training']['seconds'] / 60:.1f} min",
            "",
        ),
        (
            "fashion training",
            f"{results['fashion_training']['epochs']} epochs, {results['fashion_training']['seconds'] / 60:.1f} min",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:<34} {goal}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
