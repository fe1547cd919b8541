"""Training strips for the sequence reader: rows of 1-5 handwritten digits, often touching.

The sequence reader (``digitrec.model.sequence``) reads a blob of ink that may hold several digits
run together, without cutting it first. It learns from strips composed here from single digits
(MNIST *training* digits: the reading benchmark composes its numbers from the test digits), over a
broader range than any one benchmark: neighbours overlapping by up to ``MAX_OVERLAP`` px past first
contact, just touching, or a few pixels apart; each digit scaled, stretched and placed on a drifting
baseline; the whole strip slanted; strokes thinned or thickened; then rendered as a canvas drawing
or a paper photo (``rendering``) and turned back into an ink mask by ``preprocess.find_ink``, exactly
as ``segment`` sees an image in service. Each example is the mask as ``sequence.strip_input`` makes
it, with its digits' labels.
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np

from digitrec.errors import NoDigitFoundError
from digitrec.imaging import preprocess
from digitrec.learning import rendering
from digitrec.learning.numbers import INK_LEVEL, crop_to_ink

MAX_OVERLAP = 4  # px at 28 px scale a digit may slide past first contact with its neighbour
LENGTH_WEIGHTS = {1: 0.1, 2: 0.25, 3: 0.25, 4: 0.25, 5: 0.15}  # digits per strip


@dataclasses.dataclass(frozen=True)
class Strip:
    """Digits composed at 28 px scale: float32 ink in [0, 1] and the digits' labels, left to right."""

    ink: np.ndarray
    labels: list[int]


def _contact(canvas: np.ndarray, part: np.ndarray, top: int, start: int) -> int:
    """The largest left edge <= ``start`` at which ``part``'s ink touches (8-neighbours) ink on ``canvas``."""
    h, w = part.shape
    grown = cv2.dilate((part > INK_LEVEL).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    laid = canvas > INK_LEVEL
    for left in range(start, -1, -1):
        if np.any(laid[top : top + h, left : left + w] & grown):
            return left
    return 0


def compose(digits: list[np.ndarray], labels: list[int], rng: np.random.Generator) -> Strip:
    """Lay 28x28 digits (uint8, white on black) in a row: touching, overlapping or a little apart."""
    parts = []
    for digit in digits:
        part = crop_to_ink(np.asarray(digit, np.uint8))
        scale = rng.uniform(0.8, 1.2)
        stretch = rng.uniform(0.85, 1.15)
        size = (max(1, round(part.shape[1] * scale * stretch)), max(1, round(part.shape[0] * scale)))
        parts.append(cv2.resize(part, size, interpolation=cv2.INTER_LINEAR))
    margin, drift = 8, rng.uniform(-2.0, 2.0)
    tallest = max(p.shape[0] for p in parts)
    height = tallest + 2 * margin + int(abs(drift) * len(parts)) + 4
    width = sum(p.shape[1] for p in parts) + 8 * len(parts) + 2 * margin
    canvas = np.zeros((height, width), np.uint8)
    base = margin + (int(abs(drift) * len(parts)) if drift < 0 else 0)
    right = margin
    for index, part in enumerate(parts):
        h, w = part.shape
        top = int(round(base + drift * index + (tallest - h) * rng.uniform(0.3, 1.0) + rng.uniform(-1.5, 1.5)))
        top = min(max(top, 1), height - h - 1)
        if index == 0:
            left = right
        elif rng.random() < 0.25:
            left = right + int(rng.integers(1, 6))  # apart by a few pixels
        else:
            left = max(1, _contact(canvas, part, top, right + 1) - int(rng.integers(0, MAX_OVERLAP + 1)))
        region = canvas[top : top + h, left : left + w]
        np.maximum(region, part[: region.shape[0], : region.shape[1]], out=region)
        right = max(right, left + w)
    canvas = canvas[:, : right + margin]
    shear = rng.uniform(-0.35, 0.35)  # columns per row
    h, w = canvas.shape
    pad = int(abs(shear) * h) + 1
    matrix = np.float32([[1, shear, pad - shear * h / 2.0], [0, 1, 0]])
    canvas = cv2.warpAffine(canvas, matrix, (w + 2 * pad, h), flags=cv2.INTER_LINEAR)
    return Strip(canvas.astype(np.float32) / 255.0, [int(v) for v in labels])


def render_mask(strip: Strip, rng: np.random.Generator) -> np.ndarray | None:
    """The strip drawn or photographed at a random size, as ``find_ink``'s 0/1 ink mask cropped to the
    ink (None when the rendering lost the ink)."""
    scale = float(rng.uniform(2.0, 8.0))
    h, w = strip.ink.shape
    ink = cv2.resize(strip.ink, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_CUBIC)
    ink = np.clip(ink, 0.0, 1.0)
    weight = rng.uniform(-0.25, 0.45) * scale  # thinner or thicker strokes, in pixels of the rendering
    size = int(round(abs(weight)))
    if size >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size + 1, size + 1))
        ink = cv2.dilate(ink, kernel) if weight > 0 else cv2.erode(ink, kernel)
    image = rendering.render(ink, rng)
    try:
        _, (mask, (x, y, bw, bh)) = preprocess.find_ink(image, drop_specks=True)
    except NoDigitFoundError:
        return None
    return mask[y : y + bh, x : x + bw]


def examples(
    images: np.ndarray, labels: np.ndarray, count: int, seed: int = 0
) -> tuple[list[np.ndarray], list[list[int]]]:
    """``count`` training strips (``sequence.strip_input`` of each rendered mask) and their labels."""
    from digitrec.model.sequence import strip_input

    rng = np.random.default_rng(seed)
    lengths, weights = zip(*LENGTH_WEIGHTS.items())
    probabilities = np.asarray(weights) / sum(weights)
    strips, texts = [], []
    while len(strips) < count:
        k = int(rng.choice(lengths, p=probabilities))
        chosen = rng.choice(len(images), size=k, replace=False)
        strip = compose([images[i] for i in chosen], [int(labels[i]) for i in chosen], rng)
        mask = render_mask(strip, rng)
        if mask is None:
            continue
        strips.append(strip_input(mask))
        texts.append(strip.labels)
    return strips, texts


def _buckets(widths: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of indices of strips of similar width (little padding), in random order."""
    order = rng.permutation(len(widths))
    order = order[np.argsort(widths[order], kind="stable")]
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _columns_needed(text: list[int]) -> int:
    return len(text) + sum(a == b for a, b in zip(text, text[1:]))


def train(
    strips: list[np.ndarray],
    texts: list[list[int]],
    epochs: int,
    seed: int,
    batch_size: int = 64,
    spec: object | None = None,
    decay: int = 2,
    log=print,
) -> tuple[object, list[float]]:
    """Fit a ``SequenceNet`` with CTC loss (Adam at 1e-3, the rate halved for each of the last ``decay`` epochs)."""
    from digitrec.model.sequence import BLANK, STRIDE, SequenceNet, SequenceSpec, batch
    from digitrec.runtime.tf_loader import tf

    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    network = SequenceNet(spec or SequenceSpec(), seed=seed)
    decay = min(decay, epochs - 1)
    schedule = [1e-3] * (epochs - decay) + [1e-3 / 2 ** (k + 1) for k in range(decay)]
    optimizer = tf.keras.optimizers.Adam(schedule[0])
    variables = list(network.trainable_variables)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, None], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.SparseTensorSpec([None, None], tf.int32),
            tf.TensorSpec([None], tf.int32),
        ]
    )
    def step(x, columns, labels, lengths):
        with tf.GradientTape() as tape:
            logits = network.logits(x, dropout=0.1)
            loss = tf.nn.ctc_loss(labels, logits, lengths, columns, logits_time_major=False, blank_index=BLANK)
            loss = tf.reduce_mean(loss)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    # CTC needs a column per digit and one between repeated digits: drop the rare strip too narrow for that
    keep = [i for i, (s, t) in enumerate(zip(strips, texts)) if _columns_needed(t) <= s.shape[1] // STRIDE]
    strips, texts = [strips[i] for i in keep], [texts[i] for i in keep]
    widths = np.asarray([s.shape[1] for s in strips])
    losses = []
    for epoch in range(epochs):
        optimizer.learning_rate = schedule[min(epoch, len(schedule) - 1)]
        total = []
        for indices in _buckets(widths, batch_size, rng):
            x, columns = batch([strips[i] for i in indices])
            rows = [texts[i] for i in indices]
            index = [[r, c] for r, row in enumerate(rows) for c in range(len(row))]
            values = [v for row in rows for v in row]
            labels = tf.SparseTensor(
                np.asarray(index, np.int64), np.asarray(values, np.int32), [len(rows), max(len(r) for r in rows)]
            )
            lengths = np.asarray([len(r) for r in rows], np.int32)
            total.append(float(step(tf.constant(x), tf.constant(columns), labels, tf.constant(lengths))))
        losses.append(float(np.mean(total)))
        log(f"epoch {epoch + 1}/{epochs}: CTC loss {losses[-1]:.4f}")
    return network, losses


def accuracy(reader: object, strips: list[np.ndarray], texts: list[list[int]], batch_size: int = 128) -> float:
    """Share of strips whose best-path reading is exactly their digits."""
    from digitrec.model.sequence import batch, decode

    right = 0
    for i in range(0, len(strips), batch_size):
        x, columns = batch(strips[i : i + batch_size])
        probabilities = reader(x).numpy() if hasattr(reader(x), "numpy") else reader(x)
        for p, n, text in zip(probabilities, columns, texts[i : i + batch_size]):
            right += decode(p[:n]).labels == list(text)
    return right / max(len(strips), 1)


CHUNK = 40000  # strips generated per seed (``main``: chunk i uses seed + 10 i)


def main(argv: list[str] | None = None) -> None:
    """Generate strips, train the sequence reader, measure it on held-out strips, write its folder."""
    import argparse
    import shlex
    import sys
    import time
    from pathlib import Path

    from digitrec.learning.datasets import LOOKUP_HELP, load_split
    from digitrec.model import checkpoints, sequence

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--datasets", default=None, help=LOOKUP_HELP)
    parser.add_argument("--out", default=str(checkpoints.shipped_models_dir() / "sequence"))
    parser.add_argument("--count", type=int, default=2 * CHUNK, help="training strips")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--decay", type=int, default=2, help="last epochs that each halve the learning rate")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    started = time.time()
    images, labels = load_split("mnist", "train", args.datasets)
    strips, texts = [], []
    for chunk, first in enumerate(range(0, args.count, CHUNK)):
        more, more_texts = examples(
            images[:50000], labels[:50000], min(CHUNK, args.count - first), args.seed + 10 * chunk
        )
        strips += more
        texts += more_texts
    held, held_texts = examples(images[50000:], labels[50000:], 2000, args.seed + 1)
    print(f"{len(strips)} training strips, {len(held)} held out, {time.time() - started:.0f} s", flush=True)
    network, losses = train(strips, texts, args.epochs, args.seed, decay=args.decay)
    held_out = accuracy(network, held, held_texts)
    print(json.dumps({"losses": [round(v, 4) for v in losses], "held_out_accuracy": round(held_out, 4)}))
    out = Path(args.out)
    with checkpoints.staged_model_dir(out) as staging:
        sequence.save(
            network,
            staging,
            {
                "name": "sequence",
                "version": time.strftime("%Y%m%d"),
                "trained_on": (
                    f"{len(strips)} strips of 1-5 MNIST training digits (0-49,999): touching, overlapping by up "
                    f"to {MAX_OVERLAP} px past contact or 1-5 px apart at 28 px scale; scaled, slanted, strokes "
                    "thinned or thickened; canvas or paper photo (digitrec.learning.rendering), then find_ink's mask"
                ),
                "command": "python -m digitrec.learning.sequences "
                + shlex.join(argv if argv is not None else sys.argv[1:]),
                "losses": [round(v, 4) for v in losses],
                "evaluation": {
                    "held_out_strips": len(held),
                    "held_out_from": "MNIST training digits 50,000-59,999",
                    "whole_strip_accuracy": round(held_out, 4),
                },
            },
        )
    print(f"wrote {out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
