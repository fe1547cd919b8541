"""Reading numbers: whole-number accuracy against Tesseract, on MNIST and on other writers, and the cost.

Numbers are composed by ``digitrec.learning.numbers`` from single handwritten digits:

- MNIST test digits (never trained on), 2-8 digits, apart (a clear gap) or touching (neighbours slid
  together until their ink touches, then 0-2 px further at 28 px scale), rendered as canvas drawings
  (dark ink on the drawing page's white 280-px-high canvas, PNG) and as photographed paper (coloured
  paper and ink, uneven light, blur, noise, JPEG);
- UCI optdigits as scikit-learn ships it (``sklearn.datasets.load_digits``: 1,797 digits by writers
  outside MNIST, 8x8 counts of a 32x32 bitmap): each upscaled back to 32x32 (bicubic) and composed
  the same way.

Tesseract (``tesseract --psm 7 -c tessedit_char_whitelist=0123456789``, one text line of digits)
reads the same files. Each row counts why numbers were missed: a refused mark (right with it put
back), another number of marks than digits, or a wrong label. Cost: ``read`` of a k-digit canvas
number against ``predict`` of a one-digit canvas of the same size, called alternately in one process
and timed in process CPU time (``time.process_time``, every thread of the process, both sides
alike): wall-clock ratios swing with the load of other processes on a shared machine, CPU time
spent by this process does much less. ``read`` with the sequence reader switched off (the
segmentation alone) is timed in the same turns; ``--cost-spacings apart,touching`` times touching
numbers too. And ``predict`` of the code before reading existed (the parent of
the commit that added ``digitrec/imaging/segment.py``, from ``git archive``) against ``predict``
now, in two processes that take turns.

    python benchmarks/bench_reading.py --data-dir ../shared/datasets [--count 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from digitrec.learning import numbers  # noqa: E402
from digitrec.learning.datasets import load_split  # noqa: E402
from digitrec.model.recognizer import DigitRecognizer  # noqa: E402

TESSERACT = ["tesseract", "stdin", "stdout", "--psm", "7", "-c", "tessedit_char_whitelist=0123456789"]


def optdigits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's optdigits as 28-px-scale digits, white on black (uint8 (n, 36, 36))."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = []
    for counts in digits.images:
        big = cv2.resize((counts / 16.0).astype(np.float32), (32, 32), interpolation=cv2.INTER_CUBIC)
        big = np.clip(big * 255.0, 0, 255).astype(np.uint8)
        images.append(cv2.copyMakeBorder(big, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=0))
    return np.stack(images), digits.target.astype(np.int64)


def tesseract(data: bytes) -> str:
    result = subprocess.run(TESSERACT, input=data, capture_output=True, timeout=60)
    return "".join(ch for ch in result.stdout.decode(errors="replace") if ch.isdigit())


def miss_kind(reading, text: str) -> str:
    """Why a reading missed: ``"refused"`` (it would be right with its refused marks put back),
    ``"count"`` (it found another number of marks than digits written), else ``"label"``."""
    marks = sorted([*reading.digits, *reading.refused], key=lambda mark: mark.box[0])
    if "".join(mark.name for mark in marks) == text:
        return "refused"
    return "count" if len(marks) != len(text) else "label"


def accuracy_table(
    recognizer: DigitRecognizer,
    images: np.ndarray,
    labels: np.ndarray,
    lengths: list[int],
    count: int,
    tesseract_count: int,
    spacings: tuple[str, ...],
    seed: int,
) -> list[dict]:
    rows = []
    for spacing in spacings:
        for render in numbers.RENDERS:
            for length in lengths:
                n = count if length == 4 else max(1, count // 4)
                ours = theirs = tried = 0
                misses = {"refused": 0, "count": 0, "label": 0}
                for index, number in enumerate(
                    numbers.numbers(images, labels, n, length, spacing, render, seed=seed + length)
                ):
                    reading = recognizer.read(number.data)
                    ours += reading.text == number.text
                    if reading.text != number.text:
                        misses[miss_kind(reading, number.text)] += 1
                    if index < (tesseract_count if length == 4 else tesseract_count // 4):
                        theirs += tesseract(number.data) == number.text
                        tried += 1
                rows.append(
                    {
                        "spacing": spacing,
                        "render": render,
                        "digits": length,
                        "numbers": n,
                        "read": ours / n,
                        "tesseract": theirs / tried if tried else None,
                        "tesseract_numbers": tried,
                        "misses": misses,
                    }
                )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _cpu_time(call, *args) -> float:
    """CPU seconds this process (all its threads: TF's pool too) spent in ``call(*args)``."""
    start = time.process_time()
    call(*args)
    return time.process_time() - start


def read_cost(
    recognizer: DigitRecognizer, images: np.ndarray, labels: np.ndarray, repeats: int, spacings: list[str]
) -> list[dict]:
    """``read`` of a k-digit canvas against ``predict`` of one digit on a canvas of the same size: the
    median CPU time of each, called in turn (``_cpu_time``), and of ``read`` without the sequence
    reader (``sequence_reading`` False: the segmentation alone) in the same turns."""
    import cv2

    rows = []
    for spacing in spacings:
        for length in (1, 2, 4, 6, 8):
            number = next(numbers.numbers(images, labels, 1, length, spacing, "canvas", seed=100 + length))
            canvas = number.image()
            single = np.full_like(canvas, 255)
            one = numbers.canvas(numbers.compose([images[0]], [labels[0]], "apart", np.random.default_rng(0)))
            glyph = one.image()[:, : min(one.size[0], canvas.shape[1])]
            single[:, : glyph.shape[1]] = glyph
            single_png = cv2.imencode(".png", single)[1].tobytes()
            reads, predicts, alone = [], [], []
            for _ in range(repeats):
                predicts.append(_cpu_time(recognizer.predict, single_png))
                reads.append(_cpu_time(recognizer.read, number.data))
                recognizer.sequence_reading = False
                alone.append(_cpu_time(recognizer.read, number.data))
                recognizer.sequence_reading = True
            read_ms, predict_ms = statistics.median(reads) * 1e3, statistics.median(predicts) * 1e3
            rows.append(
                {
                    "spacing": spacing,
                    "digits": length,
                    "size": list(number.size),
                    "read_ms": round(read_ms, 3),
                    "predict_ms": round(predict_ms, 3),
                    "ratio": round(read_ms / predict_ms, 3),
                    "read_without_sequence_ms": round(statistics.median(alone) * 1e3, 3),
                    "ratio_without_sequence": round(statistics.median(alone) * 1e3 / predict_ms, 3),
                    "bound": round(1 + 0.3 * length, 2),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


WORKER = r"""
import sys, time, statistics
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from digitrec.model.recognizer import DigitRecognizer
recognizer = DigitRecognizer.load(sys.argv[3])
data = Path(sys.argv[2]).read_bytes()
for _ in range(20):
    recognizer.predict(data)
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    times = []
    for _ in range(n):
        start = time.process_time()
        recognizer.predict(data)
        times.append(time.process_time() - start)
    print(statistics.median(times), flush=True)
"""


def predict_before_and_after(rounds: int, per_round: int) -> dict:
    """Median ``predict`` CPU time of the code before reading and now, two processes taking turns."""
    added = subprocess.run(
        ["git", "-C", str(REPO), "log", "--format=%H", "--diff-filter=A", "-1", "--", "digitrec/imaging/segment.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    baseline = f"{added}^"
    workdir = Path(tempfile.mkdtemp(prefix="bench-reading-"))
    workers: dict[str, subprocess.Popen] = {}
    try:
        archive = workdir / "before.tar"
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), baseline, "digitrec"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(workdir / "before", filter="data")
        sample = REPO / "examples" / "seven.png"
        model = str(REPO / "data" / "trained_models" / "digits")
        for name, root in (("before", workdir / "before"), ("now", REPO)):
            workers[name] = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(root), str(sample), model],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert workers[name].stdout.readline().strip() == "ready"
        medians: dict[str, list[float]] = {"before": [], "now": []}
        for index in range(rounds):
            order = ("before", "now") if index % 2 == 0 else ("now", "before")
            for name in order:
                workers[name].stdin.write(f"{per_round}\n")
                workers[name].stdin.flush()
                medians[name].append(float(workers[name].stdout.readline()))
    finally:
        for worker in workers.values():
            worker.stdin.close()
        for worker in workers.values():
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:  # measured already; only its exit is slow
                worker.kill()
                worker.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    before, now = statistics.median(medians["before"]) * 1e3, statistics.median(medians["now"]) * 1e3
    return {
        "baseline": baseline,
        "before_ms": round(before, 4),
        "now_ms": round(now, 4),
        "ratio": round(now / before, 4),
        "rounds": rounds,
    }


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    return {
        "cores": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("DIGITREC_DATASETS", str(REPO.parent / "shared/datasets")))
    parser.add_argument("--count", type=int, default=200, help="4-digit numbers per condition (others: a quarter)")
    parser.add_argument("--tesseract-count", type=int, default=100, help="of those, how many Tesseract reads")
    parser.add_argument("--lengths", default="2,3,4,5,6,7,8")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per side for the cost")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: mnist,optdigits,cost,predict")
    parser.add_argument("--model", default="digits", help="digits, or a model directory")
    parser.add_argument("--cost-spacings", default="apart", help="numbers the cost reads: apart,touching")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    lengths = [int(v) for v in args.lengths.split(",")]
    recognizer = DigitRecognizer.load(args.model)
    images, labels = load_split("mnist", "test", args.data_dir)
    report: dict = {"machine": machine(), "model": f"{recognizer.name} {recognizer.version}"}
    if "mnist" not in skip:
        report["mnist"] = accuracy_table(
            recognizer, images, labels, lengths, args.count, args.tesseract_count, numbers.SPACINGS, seed=2026
        )
    if "optdigits" not in skip:
        other_images, other_labels = optdigits()
        singles = recognizer.predict_batch(list(other_images))
        report["optdigits_single_digit_accuracy"] = float(np.mean([p.label for p in singles] == other_labels))
        report["optdigits"] = accuracy_table(
            recognizer, other_images, other_labels, lengths, args.count, args.tesseract_count, ("apart",), seed=3030
        )
    if "cost" not in skip:
        spacings = args.cost_spacings.split(",")
        report["read_cost"] = read_cost(recognizer, images, labels, args.repeats, spacings)
    if "predict" not in skip:
        report["predict_before_and_after"] = predict_before_and_after(rounds=20, per_round=max(10, args.repeats // 4))
    report["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(json.dumps(report["machine"]))
    for part in ("mnist", "optdigits"):
        for row in report.get(part, []):
            tess = "-" if row["tesseract"] is None else f"{row['tesseract']:.1%} of {row['tesseract_numbers']}"
            print(
                f"{part:9} {row['spacing']:8} {row['render']:6} {row['digits']} digits: read {row['read']:.1%} "
                f"of {row['numbers']}, tesseract {tess}; misses {row['misses']}"
            )
    if "optdigits_single_digit_accuracy" in report:
        print(f"optdigits single digits through predict: {report['optdigits_single_digit_accuracy']:.2%}")
    for row in report.get("read_cost", []):
        print(
            f"cost: {row['spacing']} {row['digits']} digits {row['size']}: read {row['read_ms']} ms, predict "
            f"{row['predict_ms']} ms, ratio {row['ratio']} (bound {row['bound']}); without the sequence reader "
            f"{row['read_without_sequence_ms']} ms, ratio {row['ratio_without_sequence']}"
        )
    if "predict_before_and_after" in report:
        p = report["predict_before_and_after"]
        print(f"predict before {p['before_ms']} ms, now {p['now_ms']} ms, ratio {p['ratio']} ({p['baseline']})")


if __name__ == "__main__":
    main()
