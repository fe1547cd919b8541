"""Poisoning: one anonymous client sends wrong corrections of its own predictions; does finetune learn them?

    nice -n 10 python benchmarks/bench_poisoning.py --datasets /work/shared/datasets [--per-side 300]
        [--others 30] [--json]

1. A real service (waitress on 127.0.0.1, SQLite, a viewer token configured, so it is protected:
   corrections need the record's correction key) serves the shipped digits model, with no limit on
   corrections per minute (the flood would otherwise be slowed, not stopped).
2. The poisoner, a client bound to 127.0.0.2, predicts ``--per-side`` MNIST training digits (rendered as
   dark ink on paper) and corrects every one of its own answers to a wrong label, with each answer's
   correction key. ``--others`` clients bound to 127.0.0.3, 127.0.0.4, ... predict ``--per-side`` other
   digits between them and correct each to its true label.
3. The service stops; its data folder is copied, and in the copy the poisoner's corrections are removed.
4. ``digitrec finetune digits --no-promote`` runs once on each folder, both at the same time under
   ``nice`` (the same seed and settings, so the same host load for both): "poisoned" learns from
   everything the service holds, with the per-client cap; "clean" from the right corrections alone.
5. Printed: both sides' MNIST test accuracy (full 10,000 images) and their difference (the goal: within
   0.1 points), the held-out corrections, the gate's verdict and reasons, and the corrections each
   side used by kind (model.json lineage).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

VIEWER = "bench-viewer-token-0123456789"
POISONER = "127.0.0.2"


class BoundConnection(http.client.HTTPConnection):
    """An HTTP connection from a chosen loopback source address (clients told apart by address)."""

    def __init__(self, host: str, port: int, source: str) -> None:
        super().__init__(host, port, timeout=60, source_address=(source, 0))


def call(port: int, source: str, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    conn = BoundConnection("127.0.0.1", port, source)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def paper_png(image28: np.ndarray) -> bytes:
    big = cv2.resize(255 - image28, (112, 112), interpolation=cv2.INTER_CUBIC)
    ok, buffer = cv2.imencode(".png", big)
    assert ok
    return buffer.tobytes()


def predict(port: int, source: str, png: bytes) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, answer = call(
        port, source, "POST", "/api/v1/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    if status != 200:
        raise RuntimeError(f"predict answered {status}: {answer}")
    return answer["predictions"][0]


def correct(port: int, source: str, answer: dict, label: int) -> None:
    body = json.dumps({"label": label, "correction_key": answer["correction_key"]}).encode()
    path = f"/api/v1/records/{answer['request_id']}/correction"
    status, reply = call(port, source, "POST", path, body, {"Content-Type": "application/json"})
    if status != 200:
        raise RuntimeError(f"correction answered {status}: {reply}")


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def service(data_dir: Path, port: int):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DIGITREC_VIEWER_TOKEN": VIEWER,
        "DIGITREC_CORRECTIONS_PER_MINUTE": "0",
        "DIGITREC_ACCESS_LOG": "0",
        "DIGITREC_MODEL_POLL_SECONDS": "0",
    }
    command = [sys.executable, "-m", "digitrec", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                status, body = call(port, "127.0.0.1", "GET", "/readyz", b"", {})
                if status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not become ready")
            time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def finetune_all(data_dirs: list[Path], datasets: Path) -> list[dict]:
    """``digitrec finetune`` on each folder, all at once (at niceness 10), each in its own process."""
    started = time.perf_counter()
    procs = []
    for data_dir in data_dirs:
        nice = ["nice", "-n", str(max(0, 10 - os.nice(0)))]
        command = [
            *nice, sys.executable, "-m", "digitrec", "finetune", "digits", "--data-dir", str(data_dir),
            "--models-dir", str(data_dir / "trained_models"), "--datasets", str(datasets), "--no-promote",
            "--json", "--quiet",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"finetune failed: {err[-2000:]}")
        result = json.loads(out)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
    return results


def remove_corrections(data_dir: Path, request_ids: list[str]) -> None:
    from digitrec.records.sqlite_store import SQLiteStore

    with SQLiteStore(data_dir / "records.sqlite3") as store:
        for rid in request_ids:
            assert store.set_correction(uuid.UUID(rid), None)


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, {model}, load average {load}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=Path(os.environ.get("DIGITREC_DATASETS", "")))
    parser.add_argument("--per-side", type=int, default=300, help="wrong corrections, and right ones (300 each)")
    parser.add_argument("--others", type=int, default=30, help="clients sending the right ones (default 30)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from digitrec.learning.datasets import load_split

    images, labels = load_split("mnist", "train", args.datasets)
    rng = np.random.default_rng(18)
    picked = rng.choice(len(labels), 2 * args.per_side, replace=False)
    before = machine()
    with tempfile.TemporaryDirectory(prefix="digitrec-poison-") as scratch:
        poisoned_dir, clean_dir = Path(scratch) / "poisoned", Path(scratch) / "clean"
        port = free_port()
        poison_ids = []
        started = time.perf_counter()
        with service(poisoned_dir, port):
            for n, index in enumerate(picked):
                poisoner = n < args.per_side
                source = POISONER if poisoner else f"127.0.0.{3 + (n - args.per_side) % args.others}"
                answer = predict(port, source, paper_png(images[index]))
                truth = int(labels[index])
                if poisoner:  # a wrong label for its own prediction, never the truth
                    correct(port, source, answer, (truth + 1 + int(rng.integers(0, 9))) % 10)
                    poison_ids.append(answer["request_id"])
                else:
                    correct(port, source, answer, truth)
        http_seconds = time.perf_counter() - started
        shutil.copytree(poisoned_dir, clean_dir)
        remove_corrections(clean_dir, poison_ids)
        poisoned, clean = finetune_all([poisoned_dir, clean_dir], args.datasets)
    difference = 100 * (poisoned["test_accuracy"] - clean["test_accuracy"])
    result = {
        "per_side": args.per_side,
        "others": args.others,
        "http_seconds": round(http_seconds, 1),
        "poisoned": poisoned,
        "clean": clean,
        "test_accuracy_difference_points": round(difference, 3),
        "within_0_1_points": abs(difference) <= 0.1,
        "machine_before": before,
        "machine_after": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    for name in ("poisoned", "clean"):
        side = result[name]
        print(
            f"{name:9s} test {100 * side['test_accuracy']:.2f} % (parent {100 * side['parent_test_accuracy']:.2f} %), "
            f"held-out corrections {side['corrections_held_out']}: {100 * side['parent_holdout_accuracy']:.2f} % -> "
            f"{100 * side['holdout_accuracy']:.2f} %, gate {'passed' if side['gate_passed'] else 'refused'}; "
            f"corrections {side['corrections_by_kind']}; {side['wall_seconds']} s"
        )
        print(f"          gate: {'; '.join(side['reasons'])}")
    print(f"difference (poisoned - clean): {difference:+.3f} points of MNIST test accuracy (goal: within 0.1)")
    print(f"machine: {result['machine_before']} (before), {result['machine_after']} (after); {result['date']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
