"""What predict pays for saying "this image holds several digits", measured interleaved in one process.

    python benchmarks/bench_predict_hint.py [--images 500] [--rounds 7] [--data-dir ../shared/datasets] [--json]

Whole ``POST /api/v1/predict`` requests (multipart PNG, form parsing, decode, preprocess, model call,
durable SQLite write of record and image, JSON answer, metrics) go through the WSGI app in this process
(``create_app``: the digits model, SQLite records in a temporary folder; no HTTP server, whose share is
the same on both sides). ``--images`` one-digit images, MNIST test digits rendered as 112x112 paper
photos, are each sent twice: with the look for several digits, and without it
(``digitrec.service.predictor.several_digits`` swapped for a function answering False), in a random
order, so both sides see the same moments of a shared machine; ``--rounds`` times over all images.

Printed: CPU ms per request of each side (median over rounds) and their ratio (goal: at most 1.05);
how many of the one-digit images were wide enough to be read to be sure; the look alone, called in a
loop on the images' prepared inputs, as a share of a request (it runs warmer there than inside a
request, where the model call and the store have just evicted it from the caches); and, for scale,
requests for two-digit images, which the look reads.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from benchmarks.bench_http import multipart  # noqa: E402
from digitrec.service import predictor as predictor_module  # noqa: E402
from digitrec.service.app import create_app  # noqa: E402
from digitrec.service.config import ServiceConfig  # noqa: E402
from digitrec.service.number_hint import may_hold_several, several_digits  # noqa: E402


def paper_png(image28: np.ndarray, width: int = 112, height: int = 112) -> bytes:
    """Dark ink on white paper, as a photo of one digit (or a row of them) would be."""
    big = cv2.resize(255 - image28, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".png", big)[1].tobytes()


def two_digit_png(a: np.ndarray, b: np.ndarray) -> bytes:
    return paper_png(np.hstack([a, b]), width=224, height=112)


class Requests:
    """``POST /api/v1/predict`` of one PNG through the app, with or without the look."""

    def __init__(self, app) -> None:
        self.app = app
        self.statuses: list[str] = []

    def environ(self, png: bytes) -> dict:
        body, headers = multipart(png)
        environ = EnvironBuilder(path="/api/v1/predict", method="POST", data=body, headers=headers).get_environ()
        return {**environ, "wsgi.input": io.BytesIO(body)}

    def cpu_ms(self, png: bytes, look: bool) -> float:
        predictor_module.several_digits = several_digits if look else (lambda *args: False)
        environ = self.environ(png)
        started = time.process_time()
        b"".join(self.app(environ, lambda status, headers, exc_info=None: self.statuses.append(status)))
        spent = (time.process_time() - started) * 1000.0
        if not self.statuses.pop().startswith("200"):
            raise RuntimeError("the service did not answer 200")
        return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--data-dir", default=os.environ.get("DIGITREC_DATASETS", str(REPO.parent / "shared/datasets")))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from digitrec.learning.datasets import load_split

    x, _ = load_split("mnist", "test", Path(args.data_dir))
    singles = [paper_png(x[i]) for i in range(args.images)]
    pairs = [two_digit_png(x[i], x[i + 1]) for i in range(0, 2 * min(args.images, 100), 2)]

    with tempfile.TemporaryDirectory() as folder:
        config = ServiceConfig.from_env(
            dict(os.environ), data_dir=Path(folder), models=("digits",), model_poll_seconds=0
        )
        app = create_app(config, wait_for_models=True)
        try:
            requests = Requests(app)
            recognizer = app.context.models.get("digits").recognizer
            prepared = [recognizer.prepare(png) for png in singles]
            wide = sum(may_hold_several(p.preview) for p in prepared)
            for png in singles[:30]:  # warm both paths
                requests.cpu_ms(png, False)
                requests.cpu_ms(png, True)
            sides: dict[bool, list[float]] = {False: [], True: []}
            rng = random.Random(1)
            for _ in range(args.rounds):
                spent = {False: 0.0, True: 0.0}
                for png in singles:
                    order = [False, True]
                    rng.shuffle(order)
                    for look in order:
                        spent[look] += requests.cpu_ms(png, look)
                for look in (False, True):
                    sides[look].append(spent[look] / len(singles))
            started = time.process_time()
            for _ in range(args.rounds):
                for prep in prepared:
                    several_digits(recognizer, prep.preview, prep.image)
            look_ms = (time.process_time() - started) * 1000.0 / (args.rounds * len(prepared))
            pair_ms = {look: statistics.fmean(requests.cpu_ms(p, look) for p in pairs) for look in (False, True)}
            flagged = sum(several_digits(recognizer, p.preview, p.image) for p in map(recognizer.prepare, pairs))
        finally:
            predictor_module.several_digits = several_digits
            app.close()

    off, on = statistics.median(sides[False]), statistics.median(sides[True])
    result = {
        "one_digit_images": len(singles),
        "rounds": args.rounds,
        "cpu_ms_per_request_look_off": round(off, 4),
        "cpu_ms_per_request_look_on": round(on, 4),
        "ratio_on_off": round(on / off, 4),
        "rounds_off": [round(v, 4) for v in sides[False]],
        "rounds_on": [round(v, 4) for v in sides[True]],
        "one_digit_images_read_to_be_sure": wide,
        "look_alone_cpu_ms_per_image": round(look_ms, 4),
        "look_alone_share_of_request": round(look_ms / off, 4),
        "two_digit_images": len(pairs),
        "two_digit_flagged_several": flagged,
        "two_digit_cpu_ms_per_request_look_off": round(pair_ms[False], 4),
        "two_digit_cpu_ms_per_request_look_on": round(pair_ms[True], 4),
        "cores": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"one-digit images: {len(singles)}, {args.rounds} interleaved rounds, CPU ms per predict request (median)")
    print(f"  look for several digits off: {off:.3f} ms   on: {on:.3f} ms   ratio on/off: {on / off:.3f}")
    print(f"  one-digit images wide enough to be read to be sure: {wide} of {len(singles)}")
    print(f"  the look alone, in a loop: {look_ms:.4f} ms per image = {look_ms / off:.1%} of a request")
    print(f"two-digit images: {len(pairs)}, flagged as several digits: {flagged}")
    print(f"  CPU ms per predict request: look off {pair_ms[False]:.3f}, on {pair_ms[True]:.3f}")
    print(f"cores {os.cpu_count()}, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
