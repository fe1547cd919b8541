"""Teach a model to refuse what is none of its classes: fit its refusal head (outlier exposure).

``fit_domain_head(model_dir, datasets_dir)`` trains the small "none of these" head of
``digitrec.model.domain`` on the frozen classifier's features, fits its threshold, measures it, and
stores the head in the model's checkpoint and a ``"domain"`` block in its model.json. The classifier's
weights are written back unchanged, so its labels, accuracy and calibrated confidences stay the same.

What the head learns from, all passed through ``preprocess.prepare`` as the service does:

- in the domain: the model's own training images, as they are and redrawn as canvas drawings or paper
  photos (``rendering``), without the images kept for the threshold;
- not in the domain: synthetic letters, words, scribbles, shapes and textures of the ``"train"`` kinds
  (``outliers``), rendered the same ways, and the other dataset's training images (Fashion-MNIST for
  digits, MNIST for garments).

The threshold is the ``FIT_SHARE`` quantile (half the target) of the scores of in-domain images the
head never trained on: the model's validation split (``digitrec.learning.validation``) when it has
one; else a stratified 5,000 of its training images held out from the head. Half, because a 0.5 %
quantile of 5,000 images is itself uncertain by about 0.1 point (fashion's threshold at the full
target refused 0.61 % of its test set), and because the classifier did train on the held-out images
of a model without a validation split, so their scores run a little high.

Its figures are measured on sets the head and the threshold never saw: the model's test set, and a
non-domain set of the ``"test"`` kinds of every family (other fonts, shapes, scribbles, textures) plus
the other dataset's *test* images (``non_domain_test_set``); ``benchmarks/bench_refusal.py`` reports
the same sets against the max-softmax baseline.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.errors import CheckpointError, InvalidImageError, NoDigitFoundError
from digitrec.imaging.preprocess import prepare
from digitrec.learning import datasets, outliers, rendering, validation, writers
from digitrec.learning.training import AdamW, learning_rate
from digitrec.model import checkpoints
from digitrec.model.calibration import softmax, temperature_of
from digitrec.model.domain import DEFAULT_HIDDEN, DEFAULT_LAYOUT, DomainHead, new_head
from digitrec.model.inputs import to_inputs
from digitrec.model.network import DigitNet, NetworkSpec
from digitrec.runtime.tf_loader import tf

TARGET_REFUSED = 0.005  # at most this share of in-domain images may be refused
FIT_SHARE = TARGET_REFUSED / 2  # the quantile of held-out in-domain scores the threshold is put at
CONFIRMED_SHARE = 0.05  # users' corrected images weigh as this share of the dataset's in-domain images
LAYOUT_WORDS = {
    "pooled_mean_max": "mean and max of the map each convolution block hands on (early blocks after their "
    "max-pool), and the raw logits",
    "pooled_max": "max of every convolution block's output, mean of the last one's, and the raw logits",
    "final_mean_max": "mean and max of the map the last convolution block reads (the block before's output "
    "after its max-pool) and of the last block's output, and the raw logits",
    "block_mean_max": "mean and max of every convolution block's output, and the raw logits",
}
VARIED_CONFIDENCE = 0.9  # the calibrated confidence a varied digit must keep to count as that digit
HELD_OUT = 5000  # training images kept from the head, for models without a validation split
SEED = 0


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How many images of each kind the head trains on (small values make a quick, weaker head)."""

    own_raw: int = 30000
    own_rendered: int = 10000
    own_scrambled: int = 8000
    own_varied: int = 5000
    synthetic_per_family: int = 8000
    other_raw: int = 10000
    other_rendered: int = 5000
    epochs: int = 16
    test_per_family: int = 400
    other_test: int = 2000


def own_dataset(metadata: dict[str, Any]) -> str:
    """``mnist`` or ``fashion``: what the model was trained on."""
    return "fashion" if metadata.get("dataset") == "fashion-mnist" else "mnist"


def other_dataset(own: str) -> str:
    return "mnist" if own == "fashion" else "fashion"


def style_of(own: str) -> str:
    return "garment" if own == "fashion" else "digit"


def prepared(images: Iterable[np.ndarray], style: str) -> np.ndarray:
    """(N, 784) model inputs of the images ``prepare`` accepts (an image with no ink is skipped)."""
    rows = []
    for image in images:
        try:
            rows.append(prepare(image, style=style).tensor[0])
        except (NoDigitFoundError, InvalidImageError):
            continue
    return np.stack(rows) if rows else np.zeros((0, 784), np.float32)


def rendered(images28: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Dataset images redrawn as canvas drawings or paper photos."""
    return [rendering.render(rendering.enlarge(image, rng), rng) for image in images28]


def varied(
    images28: np.ndarray, labels: np.ndarray, rng: np.random.Generator, style: str
) -> tuple[np.ndarray, np.ndarray]:
    """Dataset images redrawn as other writers and scanners make them (``writers.vary``), half of them
    then rendered as canvas drawings or paper photos: (N, 784) inputs and their labels."""
    rows, kept = [], []
    for i, image in enumerate(writers.varied(images28, rng)):
        if i % 2:
            image = rendering.render(image.astype(np.float32) / 255.0, rng)
        try:
            rows.append(prepare(image, style=style).tensor[0])
        except (NoDigitFoundError, InvalidImageError):
            continue
        kept.append(i)
    if not rows:
        return np.zeros((0, 784), np.float32), np.zeros(0, np.int64)
    return np.stack(rows), labels[kept]


def scrambled(images28: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Dataset images made into none of the classes: quadrants shuffled, or two images of different
    classes laid over each other. They sit close to the classes, so they teach the head where the
    classes end rather than only what far-away marks look like."""
    out = []
    for i, image in enumerate(images28):
        if i % 2 == 0:
            quarters = [image[:14, :14], image[:14, 14:], image[14:, :14], image[14:, 14:]]
            order = rng.permutation(4)
            while (order == np.arange(4)).all():
                order = rng.permutation(4)
            q = [quarters[j] for j in order]
            out.append(np.block([[q[0], q[1]], [q[2], q[3]]]))
        else:
            others = np.flatnonzero(labels != labels[i])
            partner = images28[others[int(rng.integers(len(others)))]]
            shifted = np.roll(partner, tuple(rng.integers(-4, 5, 2)), axis=(0, 1))
            out.append(np.maximum(image, shifted))
    return out


def synthetic(per_family: int, split: str, style: str, seed: int) -> dict[str, np.ndarray]:
    """Family -> (n, 784) prepared inputs of ``per_family`` rendered synthetic marks of ``split``'s kinds."""
    out = {}
    for i, family in enumerate(outliers.FAMILIES):
        rng = np.random.default_rng([seed, i, outliers.SPLITS.index(split)])
        out[family] = prepared(
            (rendering.render(outliers.ink(family, rng, split), rng) for _ in range(per_family)), style
        )
    return out


def photo_crops(count: int, style: str, seed: int = 3) -> np.ndarray | None:
    """(count, 784) inputs of grey crops of scikit-learn's two sample photos (a temple, a flower), or
    None without scikit-learn."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return None
    import cv2

    photos = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in load_sample_images().images]
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        size = int(rng.integers(40, 200))
        y, x = int(rng.integers(photo.shape[0] - size)), int(rng.integers(photo.shape[1] - size))
        crops.append(photo[y : y + size, x : x + size])
    return prepared(crops, style)


def non_domain_test_set(
    own: str, datasets_dir: str | os.PathLike[str] | None, sizes: Sizes = Sizes(), seed: int = 1
) -> dict[str, np.ndarray]:
    """Group -> (n, 784) inputs that are none of the model's classes, of kinds the head never trained on:
    every synthetic family's ``"test"`` kinds, the other dataset's test images (half as they are,
    half rendered), and crops of photos when scikit-learn is installed."""
    style = style_of(own)
    groups = synthetic(sizes.test_per_family, "test", style, seed)
    other, _ = datasets.load_split(other_dataset(own), "test", datasets_dir)
    rng = np.random.default_rng([seed, 99])
    picked = other[rng.permutation(len(other))[: sizes.other_test]]
    half = len(picked) // 2
    name = "garments" if own == "mnist" else "digits"
    groups[name] = prepared(list(picked[:half]) + rendered(picked[half:], rng), style)
    photos = photo_crops(sizes.test_per_family, style)
    if photos is not None:
        groups["photos"] = photos
    return groups


def domain_inputs(network: DigitNet, x: np.ndarray, batch_size: int = 1000, layout: str = DEFAULT_LAYOUT) -> np.ndarray:
    """(N, 784) -> the head's (N, inputs) inputs of ``layout``, from the frozen network in inference mode."""
    fn = tf.function(
        lambda batch: network.domain_inputs(batch, layout), input_signature=[tf.TensorSpec([None, 784], tf.float32)]
    )
    parts = [fn(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def train_head(
    head: DomainHead, positives: np.ndarray, negatives: np.ndarray, epochs: int, seed: int = SEED
) -> list[float]:
    """Binary cross-entropy, in-domain = 1, with the classes weighted equally; returns the epoch losses.

    The inputs are standardised with the in-domain images' mean and spread (stored in the head)."""
    head.mean.assign(positives.mean(axis=0))
    head.inv_std.assign(1.0 / (positives.std(axis=0) + 1e-3))
    x = np.concatenate([positives, negatives]).astype(np.float32)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(np.float32)
    weight = np.where(y == 1, len(x) / (2 * len(positives)), len(x) / (2 * len(negatives))).astype(np.float32)
    batch = 256
    steps_per_epoch = math.ceil(len(x) / batch)
    total = epochs * steps_per_epoch
    variables = head.trainables
    optimizer = AdamW(variables, weight_decay=1e-4)

    @tf.function
    def step(xb: tf.Tensor, yb: tf.Tensor, wb: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(wb * tf.nn.sigmoid_cross_entropy_with_logits(labels=yb, logits=head(xb)))
        optimizer.apply(tape.gradient(loss, variables), variables, learning_rate(n, total, steps_per_epoch, 2e-3))
        return loss

    rng = np.random.default_rng(seed)
    losses, n = [], 0
    for _ in range(epochs):
        order, total_loss = rng.permutation(len(x)), 0.0
        for i in range(0, len(x), batch):
            j = order[i : i + batch]
            total_loss += float(step(x[j], y[j], weight[j], tf.constant(n, tf.int64))) * len(j)
            n += 1
        losses.append(total_loss / len(x))
    return losses


def auroc(in_domain: np.ndarray, non_domain: np.ndarray) -> float:
    """Probability that an in-domain input scores higher than a non-domain one (ties count half)."""
    scores = np.concatenate([in_domain, non_domain])
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, ties share their mean rank
    n_in, n_out = len(in_domain), len(non_domain)
    return float((ranks[:n_in].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


def figures(in_scores: np.ndarray, groups: dict[str, np.ndarray], threshold: float) -> dict[str, Any]:
    """Refused shares and AUROC of in-domain scores against each non-domain group and all of them.

    "all" weighs every group equally (each group's refused share, averaged), so a large group does not
    hide a weak one."""
    per_group = {
        name: {"count": int(len(s)), "refused": float(np.mean(s < threshold)), "auroc": auroc(in_scores, s)}
        for name, s in groups.items()
    }
    pooled = np.concatenate(list(groups.values()))
    return {
        "in_domain_refused": float(np.mean(in_scores < threshold)),
        "in_domain_count": int(len(in_scores)),
        "non_domain_refused": float(np.mean([g["refused"] for g in per_group.values()])),
        "non_domain_count": int(len(pooled)),
        "auroc": auroc(in_scores, pooled),
        "groups": per_group,
    }


def load_network(model_dir: Path) -> tuple[DigitNet, dict[str, Any]]:
    """The classifier of ``model_dir`` (its refusal head, if any, is not read)."""
    metadata = checkpoints.read_metadata(model_dir)
    if metadata.get("architecture") != "digitrec-cnn":
        raise CheckpointError(f"{model_dir}: a refusal head needs a digitrec-cnn model")
    network = DigitNet(NetworkSpec.from_json(metadata["params"]))
    prefix = str(model_dir / checkpoints.CHECKPOINT_PREFIX)
    tf.train.Checkpoint(model=network).read(prefix).expect_partial().assert_existing_objects_matched()
    return network, metadata


def save_head(model_dir: Path, network: DigitNet, head: DomainHead | None, block: dict[str, Any]) -> None:
    """Rewrite the checkpoint with the classifier (unchanged) and the head, then model.json.

    The new checkpoint is written beside the old one and moved into place file by file; model.json,
    written last, is what makes the loader expect the head."""
    staging = model_dir / ".domain-staging"
    shutil.rmtree(staging, ignore_errors=True)
    parts = {"model": network} if head is None else {"model": network, "domain_head": head}
    tf.train.Checkpoint(**parts).write(str(staging / checkpoints.CHECKPOINT_PREFIX))
    for path in sorted(staging.iterdir(), key=lambda p: p.suffix == ".index"):  # the index last
        os.replace(path, model_dir / path.name)
    shutil.rmtree(staging, ignore_errors=True)
    metadata = checkpoints.read_metadata(model_dir)
    metadata["domain"] = block
    checkpoints.write_metadata(model_dir, metadata)


def fit_domain_head(
    model_dir: str | os.PathLike[str],
    datasets_dir: str | os.PathLike[str] | None = None,
    *,
    write: bool = True,
    sizes: Sizes = Sizes(),
    hidden: int = DEFAULT_HIDDEN,
    layout: str = DEFAULT_LAYOUT,
    seed: int = SEED,
    command: str | None = None,
    confirmed: np.ndarray | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the refusal head of the model in ``model_dir``, fit its threshold, measure it, store it.

    ``confirmed`` are (N, 784) model inputs that users labelled as one of the classes (the corrections a
    fine-tune trained on). They join the in-domain examples, repeated up to a ``CONFIRMED_SHARE`` of
    them, so that a handwriting style the new version learnt is not refused as "not a digit".

    Returns the ``"domain"`` block written to model.json (method, threshold, what it trained on, where
    the threshold was fitted, and its figures on the test sets). With ``write=False`` nothing is
    written. Call it again after anything changes the classifier's features (fine-tuning): a head
    reads one network's features and means nothing for another's.
    """
    model_dir = Path(model_dir)
    network, metadata = load_network(model_dir)
    own = own_dataset(metadata)
    style, other = style_of(own), other_dataset(own)
    x_train, y_train = datasets.load_split(own, "train", datasets_dir)
    x_test, _ = datasets.load_split(own, "test", datasets_dir)
    declared = validation.declared(metadata)
    fit_share = FIT_SHARE
    if declared is not None:
        train_index, held_index = validation.rebuild(declared, y_train)
        held_desc = f"the model's validation split ({len(held_index)} {own} training images it never trained on)"
    else:
        train_index, held_index = validation.split_indices(y_train, HELD_OUT, seed)
        held_desc = (
            f"{len(held_index)} {own} training images held out from the head (stratified, seed {seed}); the "
            "classifier trained on them"
        )
    rng = np.random.default_rng(seed)
    pick = rng.permutation(train_index)
    raw = x_train[pick[: sizes.own_raw]]
    redrawn = x_train[pick[sizes.own_raw : sizes.own_raw + sizes.own_rendered]]
    log(f"in-domain: {len(raw)} {own} training images as they are, {len(redrawn)} redrawn")
    positives = np.concatenate([prepared(raw, style), prepared(rendered(redrawn, rng), style)])
    start = sizes.own_raw + sizes.own_rendered + sizes.own_scrambled
    other_hands = pick[start : start + (sizes.own_varied if own == "mnist" else 0)]  # digits have writers
    hands, hand_labels = varied(x_train[other_hands], y_train[other_hands], rng, style)
    if len(hands):  # a variation the classifier no longer reads surely as its label is not kept as that digit
        logits = domain_inputs(network, hands, layout=layout)[:, -network.spec.num_classes :]
        probabilities = softmax(logits, temperature_of(metadata))
        sure = probabilities.max(axis=1) >= VARIED_CONFIDENCE
        hands = hands[(probabilities.argmax(axis=1) == hand_labels) & sure]
    log(f"in-domain: {len(hands)} of {len(other_hands)} {own} training images redrawn as other hands write them")
    positives = np.concatenate([positives, hands])
    own_count, repeats = len(positives), 0
    if confirmed is not None and len(confirmed):
        repeats = max(1, math.ceil(CONFIRMED_SHARE * len(positives) / len(confirmed)))
        log(f"in-domain: {len(confirmed)} corrected images, each {repeats} times")
        positives = np.concatenate([positives, np.tile(np.asarray(confirmed, np.float32), (repeats, 1))])
    scramble = pick[sizes.own_raw + sizes.own_rendered :][: sizes.own_scrambled]
    x_other, _ = datasets.load_split(other, "train", datasets_dir)
    other_pick = x_other[rng.permutation(len(x_other))[: sizes.other_raw + sizes.other_rendered]]
    log(
        f"non-domain: {len(other_pick)} {other} training images, {len(scramble)} scrambled {own} training images, "
        f"{sizes.synthetic_per_family} per synthetic family"
    )
    groups = synthetic(sizes.synthetic_per_family, "train", style, seed)
    negatives = np.concatenate(
        [
            prepared(other_pick[: sizes.other_raw], style),
            prepared(rendered(other_pick[sizes.other_raw :], rng), style),
            prepared(scrambled(x_train[scramble], y_train[scramble], rng), style),
            *groups.values(),
        ]
    )
    log(f"features of {len(positives)} in-domain and {len(negatives)} non-domain images")
    head = new_head(network, hidden, seed, layout)
    losses = train_head(
        head,
        domain_inputs(network, positives, layout=layout),
        domain_inputs(network, negatives, layout=layout),
        sizes.epochs,
        seed,
    )
    log(f"head trained: loss {losses[0]:.4f} -> {losses[-1]:.4f} over {sizes.epochs} epochs")

    def scores(x: np.ndarray) -> np.ndarray:
        return head(tf.constant(domain_inputs(network, x, layout=layout))).numpy()

    held_scores = scores(to_inputs(x_train[held_index]))
    threshold = float(np.quantile(held_scores, fit_share))
    log(f"threshold {threshold:.4f}: the {100 * fit_share:.2f} % quantile of {len(held_index)} held-out images")
    test_set = non_domain_test_set(own, datasets_dir, sizes)
    measured = figures(scores(to_inputs(x_test)), {k: scores(v) for k, v in test_set.items()}, threshold)
    measured["held_out_refused"] = float(np.mean(held_scores < threshold))
    block = {
        "method": "head",
        "threshold": threshold,
        "hidden": hidden,
        "layout": layout,
        "score": "log-odds that the input is one of the model's classes; in_domain = score >= threshold",
        "inputs": LAYOUT_WORDS[layout],
        "trained_on": {
            "in_domain": f"{own_count} {own} training images ({len(raw)} as they are, {len(redrawn)} redrawn "
            f"as canvas drawings or paper photos, {len(hands)} redrawn as other writers and scanners make them "
            "(slant, proportions, stroke width, coarse resolution, blur; half of them then rendered) and still "
            f"read as their label by the classifier at a calibrated confidence of {VARIED_CONFIDENCE} or more)",
            "confirmed": {"corrected_images": 0 if confirmed is None else len(confirmed), "repeats": repeats},
            "non_domain": f"{len(negatives)} images: {other} training images (a third redrawn), {own} training "
            "images scrambled (quadrants shuffled, or two classes laid over each other), and synthetic "
            f"{', '.join(outliers.FAMILIES)} of the train kinds",
            "synthetic_kinds": outliers.kinds("train"),
            "left_out_as_ambiguous": outliers.AMBIGUOUS,
            "epochs": sizes.epochs,
            "seed": seed,
            "loss": [round(v, 5) for v in losses],
        },
        "threshold_fitted_on": held_desc,
        "target": f"at most {100 * TARGET_REFUSED:.1f} % of in-domain images refused",
        "figures": {
            "in_domain": f"the {own} test set ({len(x_test)} images)",
            "non_domain": f"synthetic marks of the test kinds ({outliers.kinds('test')}), {other} test images "
            f"and {'crops of two photos' if 'photos' in test_set else 'no photos (scikit-learn is not installed)'}",
            **measured,
        },
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if command:
        block["command"] = command
    log(
        f"test: {100 * measured['in_domain_refused']:.2f} % of {own} test images refused, "
        f"{100 * measured['non_domain_refused']:.1f} % of non-domain images refused, AUROC {measured['auroc']:.4f}"
    )
    if write:
        save_head(model_dir, network, head, block)
        log(f"wrote the head into {model_dir / checkpoints.CHECKPOINT_PREFIX} and its block into model.json")
    return block
