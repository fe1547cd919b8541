"""Train the mark scorer (``digitrec.model.marks``): whole digit, or a fragment / two digits run together.

Examples are the candidate marks ``digitrec.imaging.segment`` proposes for numbers composed by
``digitrec.learning.numbers`` from MNIST *training* digits (never the test set the reading benchmark
uses): 2-5 digits, touching or apart, drawn on a canvas or photographed on paper. Each pixel of a
composed number knows which digit laid it, so a candidate is labelled by its ink
(``label_candidates``): one digit's ink, all of it, or not; the few in between are left out. The first
50,000 training digits make the training numbers, the last 10,000 the held-out ones the metadata
reports on. Seeded: the same command makes the same scorer.

    python -m digitrec.learning.marks --data-dir ../shared/datasets --out data/trained_models/marks
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from digitrec.imaging import segment as segmentation
from digitrec.imaging.preprocess import load_image
from digitrec.learning import numbers
from digitrec.learning.datasets import load_split
from digitrec.model import checkpoints, marks

WHOLE = 0.8
WRONG = 0.6
HIDDEN = 32


def _owners_in_image(number: numbers.NumberImage, owners: np.ndarray) -> np.ndarray:
    """The strip's digit-per-pixel map brought to the image's pixels (as the renderers scale it)."""
    h, w = owners.shape
    size = (max(1, round(w * number.scale)), max(1, round(h * number.scale)))
    scaled = cv2.resize(owners, size, interpolation=cv2.INTER_NEAREST)
    image = np.full((number.size[1], number.size[0]), -1, np.int8)
    o = number.offset
    image[o : o + scaled.shape[0], o : o + scaled.shape[1]] = scaled[: image.shape[0] - o, : image.shape[1] - o]
    return image


def label_candidates(seg: segmentation.Segmentation, owners: np.ndarray, digits: int) -> np.ndarray:
    """Per candidate: 1.0 whole digit, 0.0 wrong mark, NaN in between (left out of training).

    A candidate's ink is its pieces'; each ink pixel belongs to the digit that laid it. Whole: at
    least ``WHOLE`` of its ink is one digit's, and it holds at least ``WHOLE`` of that digit's ink.
    Wrong: below ``WRONG`` on either count (a fragment, two digits run together, a digit with a
    piece of its neighbour).
    """
    per_piece = np.zeros((len(seg.parts), digits + 1))
    for i, piece in enumerate(seg.parts):
        x, y, w, h = piece.box
        who = owners[y : y + h, x : x + w][piece.mask > 0].astype(np.int64)
        per_piece[i] = np.bincount(who + 1, minlength=digits + 1)[: digits + 1]
    totals = per_piece[:, 1:].sum(axis=0)
    labels = np.full(len(seg.candidates), np.nan)
    for index, c in enumerate(seg.candidates):
        counts = per_piece[c.first : c.last + 1, 1:].sum(axis=0)
        if counts.sum() == 0:
            labels[index] = 0.0
            continue
        j = int(np.argmax(counts))
        purity, completeness = counts[j] / counts.sum(), counts[j] / max(totals[j], 1.0)
        if purity >= WHOLE and completeness >= WHOLE:
            labels[index] = 1.0
        elif purity < WRONG or completeness < WRONG:
            labels[index] = 0.0
    return labels


def examples(
    images: np.ndarray, labels: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` numbers per spacing and rendering -> inputs (n, 784), features (n, F), whole (n,)."""
    inputs, features, whole = [], [], []
    for s, spacing in enumerate(numbers.SPACINGS):
        for r, render in enumerate(numbers.RENDERS):
            rng = np.random.default_rng(seed + 10 * s + r)
            for _ in range(count):
                chosen = rng.choice(len(images), size=int(rng.integers(2, 6)), replace=False)
                strip = numbers.compose([images[i] for i in chosen], [int(labels[i]) for i in chosen], spacing, rng)
                number = numbers.canvas(strip) if render == "canvas" else numbers.paper_photo(strip, rng)
                seg = segmentation.segment(load_image(number.data))
                if not seg.candidates:
                    continue
                verdict = label_candidates(seg, _owners_in_image(number, strip.owners), len(chosen))
                keep = ~np.isnan(verdict)
                inputs.append(seg.inputs[keep])
                features.append(seg.features[keep])
                whole.append(verdict[keep])
    return np.concatenate(inputs), np.concatenate(features), np.concatenate(whole).astype(np.float32)


def _network(tf, features: np.ndarray, seed: int):
    """A ``tf.Module`` whose variables carry ``marks.WEIGHTS``' names; standardisation from ``features``."""
    init = tf.keras.initializers.GlorotUniform(seed=seed)
    module = tf.Module()
    scale = 1.0 / np.maximum(features.std(axis=0), 1e-3)
    module.feature_mean = tf.Variable(features.mean(axis=0).astype(np.float32), trainable=False)
    module.feature_scale = tf.Variable(scale.astype(np.float32), trainable=False)
    module.conv1_w = tf.Variable(init((5, 5, 1, 8)))
    module.conv1_b = tf.Variable(tf.zeros(8))
    module.conv2_w = tf.Variable(init((3, 3, 8, 16)))
    module.conv2_b = tf.Variable(tf.zeros(16))
    module.hidden_w = tf.Variable(init((5 * 5 * 16 + features.shape[1], HIDDEN)))
    module.hidden_b = tf.Variable(tf.zeros(HIDDEN))
    module.out_w = tf.Variable(init((HIDDEN, 1)))
    module.out_b = tf.Variable(tf.zeros(1))
    return module


def _logits(tf, m, x, f):
    h = tf.nn.relu(tf.nn.conv2d(tf.reshape(x, (-1, 28, 28, 1)), m.conv1_w, 2, "VALID") + m.conv1_b)
    h = tf.nn.relu(tf.nn.conv2d(h, m.conv2_w, 2, "VALID") + m.conv2_b)
    f = (f - m.feature_mean) * m.feature_scale
    h = tf.nn.relu(tf.concat([tf.reshape(h, (-1, 5 * 5 * 16)), f], axis=1) @ m.hidden_w + m.hidden_b)
    return (h @ m.out_w + m.out_b)[:, 0]


def train(
    x: np.ndarray, f: np.ndarray, y: np.ndarray, epochs: int, seed: int, batch: int = 256
) -> tuple[object, list[float]]:
    from digitrec.runtime.tf_loader import tf

    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    module = _network(tf, f, seed)
    optimizer = tf.keras.optimizers.Adam(1e-3)
    variables = [v for v in module.trainable_variables]

    @tf.function
    def step(xb, fb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(yb, _logits(tf, module, xb, fb)))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        total = []
        for i in range(0, len(order), batch):
            j = order[i : i + batch]
            total.append(float(step(tf.constant(x[j]), tf.constant(f[j]), tf.constant(y[j]))))
        losses.append(float(np.mean(total)))
    return module, losses


def evaluate(scorer: marks.MarkScorer, x: np.ndarray, f: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy at 0.5 and AUROC of the NumPy scorer (what reading runs) on held-out marks."""
    logits = scorer.logits(x, f)
    order = np.argsort(logits)
    ranks = np.empty(len(logits))
    ranks[order] = np.arange(1, len(logits) + 1)
    positives = y > 0.5
    auroc = (ranks[positives].sum() - positives.sum() * (positives.sum() + 1) / 2) / (
        positives.sum() * (~positives).sum()
    )
    return {
        "marks": int(len(y)),
        "whole_share": round(float(positives.mean()), 4),
        "accuracy": round(float(np.mean((logits > 0) == positives)), 4),
        "auroc": round(float(auroc), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(checkpoints.shipped_models_dir() / marks.NAME))
    parser.add_argument("--count", type=int, default=600, help="training numbers per spacing and rendering")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    from digitrec.runtime.tf_loader import tf

    started = time.time()
    images, labels = load_split("mnist", "train", args.data_dir)
    x, f, y = examples(images[:50000], labels[:50000], args.count, args.seed)
    vx, vf, vy = examples(images[50000:], labels[50000:], max(1, args.count // 4), args.seed + 1000)
    print(f"{len(y)} training marks ({y.mean():.1%} whole), {len(vy)} held out, {time.time() - started:.0f} s")
    module, losses = train(x, f, y, args.epochs, args.seed)
    scorer = marks.MarkScorer({name: getattr(module, name).numpy() for name in marks.WEIGHTS}, {})
    held_out = evaluate(scorer, vx, vf, vy)
    print(json.dumps({"losses": [round(v, 4) for v in losses], "held_out": held_out}))
    out = Path(args.out)
    with checkpoints.staged_model_dir(out) as staging:
        tf.train.Checkpoint(model=module).write(str(staging / checkpoints.CHECKPOINT_PREFIX))
        checkpoints.write_metadata(
            staging,
            {
                "name": marks.NAME,
                "version": time.strftime("%Y%m%d"),
                "architecture": marks.ARCHITECTURE,
                "features": list(segmentation.FEATURE_NAMES),
                "trained_on": (
                    f"candidate marks of {4 * args.count} numbers (2-5 digits; touching and apart; canvas and "
                    "paper) composed from MNIST training digits 0-49,999"
                ),
                "whole": f"ink >= {WHOLE} one digit's and >= {WHOLE} of that digit's; wrong: either < {WRONG}",
                "command": "python -m digitrec.learning.marks --data-dir ../shared/datasets "
                f"--count {args.count} --epochs {args.epochs} --seed {args.seed}",
                "training_marks": int(len(y)),
                "losses": [round(v, 4) for v in losses],
                "evaluation": {"held_out": held_out, "held_out_from": "MNIST training digits 50,000-59,999"},
            },
        )
    print(f"wrote {out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
