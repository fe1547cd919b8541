"""Fine-tune a model on its users' corrections, write it as a new version, and promote it only if it is better.

Data flows one way: corrected records (any store) -> their stored images -> the recognizer's own
``prepare`` (exactly what the model saw when it answered) -> training tensors, mixed with replayed
MNIST / Fashion-MNIST training images so the model keeps what it knew -> a new version folder
(``digitrec.model.versions.new_version_dir``) -> evaluation, calibration, the gate -> ``versions.promote``.

Calibration: when the parent declares a validation split (``digitrec.learning.validation``), those training
images are kept out of the replay and the child's temperature is fitted on them, with the ECE reported
on the full test set. A parent without one falls back to the fixed half of the test set (labelled
``"fit_split": "test_half"`` in the calibration block).

A record whose correction equals its prediction is a confirmation; it is used like any correction
(it tells the model the style it answered right). The corrected records are split by the SHA-256 of
their image into training and a fixed held-out part (the same image always lands on the same side, so
a digit sent twice cannot be trained on and then used to judge).

The gate: the new version is promoted only if its accuracy on the held-out corrections is higher than
its parent's, and on the full test set of its dataset it loses at most ``max_test_drop`` (0.05 points).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.errors import DigitrecError
from digitrec.records.trust import MAX_CLIENT_SHARE, select_corrections

MIN_CORRECTIONS = 50
HOLDOUT_PERCENT = 20


class FinetuneError(DigitrecError):
    """Fine-tuning cannot start (too few corrections, no images, unknown model)."""


@dataclasses.dataclass
class FinetuneConfig:
    name: str = "digits"
    data_dir: Path = Path("data")  # the service's data dir: records.sqlite3 and uploads/
    models_dir: Path | None = None  # where the new version is written (and promoted)
    datasets_dir: Path | None = None  # MNIST / Fashion-MNIST for replay and the test set
    min_corrections: int = MIN_CORRECTIONS
    max_client_share: float = MAX_CLIENT_SHARE  # most one anonymous client contributes (records.trust)
    holdout_percent: int = HOLDOUT_PERCENT
    replay: int | None = None  # replayed training images of the original dataset; None: all but validation
    correction_share: float = 0.35  # share of each batch drawn from the corrections
    focus: float = 0.0  # share of the correction draws weighted by how wrong the parent is on each (correction_weights)
    steps: int = 800  # training steps of ``batch_size`` images
    epochs: int | None = None  # when set: this many passes over the replayed images instead of ``steps``
    distill: float = 3.0  # weight of matching the teacher's probabilities on replayed images; 0: hard labels
    distill_temperature: float = 2.0
    distill_from: str = "shipped"  # the teacher: "shipped" (the lineage's first version) or "parent"
    replay_labels: float = 1.0  # weight of the replayed images' own labels beside the teacher's
    anchor: float = 0.05  # L2-SP: weight of the squared distance of the weights from the parent's
    strong_augment: bool = True  # warp corrections more than replayed images (each is seen many times)
    batch_size: int = 128
    learning_rate: float = 1e-4  # small: every step also moves what the parent knew
    weight_decay: float = 5e-4
    ema_decay: float = 0.995
    max_test_drop: float = 0.0005  # 0.05 points of test accuracy
    promote: bool = True  # promote when the gate passes; False: write and report only
    freeze_batch_norm: bool = True  # train with the parent's batch-norm statistics, unchanged
    refusal_share: float = 0.5  # share of ``refusal.Sizes``' training images the new refusal head learns from
    seed: int = 0
    progress: bool = True
    command: str = ""


@dataclasses.dataclass
class Corrections:
    """The corrected records as tensors, split into training and held-out parts."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_holdout: np.ndarray
    y_holdout: np.ndarray
    from_store: int = 0  # images read from the records store
    from_files: int = 0  # images read from upload files on the data volume
    skipped: list[str] = dataclasses.field(default_factory=list)  # why some records were not used
    readings_used: int = 0  # corrected readings whose digits were used (``reading_samples``)
    reading_digits: int = 0  # the labelled digits they gave
    readings_skipped: int = 0  # corrected readings left out (segmentation disagrees with the text, ...)
    selection: Any = None  # digitrec.records.trust.CorrectionSelection: who made the corrections used

    @property
    def total(self) -> int:
        return len(self.y_train) + len(self.y_holdout)


def is_held_out(image_sha256: str, percent: int = HOLDOUT_PERCENT) -> bool:
    """A fixed, content-based split: the same image is always on the same side."""
    return int(image_sha256[:8], 16) % 100 < percent


def corrected_records(store: Any, name: str) -> list[Any]:
    """Every record of model ``name`` that carries a correction, through the store's filter (paged)."""
    from digitrec.records.query import RecordFilter

    where = RecordFilter(model=name, corrected=True)
    found, cursor = [], None
    while True:
        page = store.find(where, limit=100, cursor=cursor)
        found.extend(page.records)
        cursor = page.next_cursor
        if not cursor:
            return found


def reading_samples(record: Any, data: bytes, read: Callable[[bytes], Any]) -> tuple[list[np.ndarray], list[int]] | str:
    """The labelled digits of a corrected reading, or why it gives none.

    ``read`` reads the stored image again with the current segmentation (the recognizer's ``read``) and
    returns a reading whose ``inputs`` are the model inputs of its digits, left to right. Marks it
    refused as not digits count too, in their place from the left: the corrected text says they are
    digits, and they are what the model most needs to learn. Only when it finds as many marks as the
    corrected text has digits can each be paired with its right label; otherwise nobody knows which
    mark a digit of the text belongs to, and the reading is skipped.
    """
    text = record.corrected_text
    try:
        reading = read(data)
        marks = list(zip(reading.digits, np.asarray(reading.inputs, np.float32).reshape(-1, 784)))
        refused = getattr(reading, "refused", [])
        if refused:
            marks += zip(refused, np.asarray(reading.refused_inputs, np.float32).reshape(-1, 784))
            marks.sort(key=lambda mark: mark[0].box[0] if mark[0].box else 0)
        inputs = np.asarray([row for _, row in marks], np.float32).reshape(-1, 784)
    except DigitrecError as exc:
        return f"{record.request_id}: {exc}"
    if len(inputs) != len(text):
        return (
            f"{record.request_id}: reading it again finds {len(inputs)} digit(s), "
            f"the corrected text {text!r} has {len(text)}"
        )
    return list(inputs), [int(c) for c in text]


def load_corrections(
    store: Any,
    name: str,
    prepare: Callable[[bytes], np.ndarray],
    data_dir: Path,
    holdout_percent: int,
    read: Callable[[bytes], Any] | None = None,
    max_client_share: float = MAX_CLIENT_SHARE,
) -> Corrections:
    """Images of the corrected records, preprocessed by ``prepare`` (the recognizer's), split by content.

    A corrected reading gives one labelled digit per digit of its text (``reading_samples``, with
    ``read``), all on the side of the split its image falls on."""
    from digitrec.service.uploads import UploadStore

    uploads_root = Path(data_dir)
    xs: dict[bool, list[np.ndarray]] = {False: [], True: []}
    ys: dict[bool, list[int]] = {False: [], True: []}
    empty_x, empty_y = np.zeros((0, 784), np.float32), np.zeros(0, np.int32)
    result = Corrections(empty_x, empty_y, empty_x, empty_y)
    seen: set[str] = set()
    result.selection = select_corrections(corrected_records(store, name), max_client_share)
    for record in result.selection.records:  # rejected ones skipped, one anonymous client capped
        data = store.get_image(record.request_id)
        if data is not None:
            result.from_store += 1
        else:
            path = _upload_path(uploads_root, record.image_path, UploadStore)
            if path is None:
                result.skipped.append(f"{record.request_id}: no stored image")
                continue
            data = path.read_bytes()
            result.from_files += 1
        digest = record.image_sha256 or hashlib.sha256(data).hexdigest()
        if digest in seen:  # the same picture corrected twice counts once
            result.skipped.append(f"{record.request_id}: duplicate image")
            continue
        seen.add(digest)
        side = is_held_out(digest, holdout_percent)
        if record.is_reading:
            samples = reading_samples(record, data, read) if read is not None else f"{record.request_id}: no reader"
            if isinstance(samples, str):
                result.skipped.append(samples)
                result.readings_skipped += 1
                continue
            xs[side].extend(samples[0])
            ys[side].extend(samples[1])
            result.readings_used += 1
            result.reading_digits += len(samples[1])
            continue
        try:
            tensor = prepare(data)
        except DigitrecError as exc:
            result.skipped.append(f"{record.request_id}: {exc}")
            continue
        xs[side].append(tensor.reshape(784))
        ys[side].append(int(record.corrected_label))
    for side, (x_name, y_name) in ((False, ("x_train", "y_train")), (True, ("x_holdout", "y_holdout"))):
        if xs[side]:
            setattr(result, x_name, np.stack(xs[side]).astype(np.float32))
            setattr(result, y_name, np.array(ys[side], np.int32))
    return result


def _upload_path(data_dir: Path, image_path: str | None, upload_store: type) -> Path | None:
    if not image_path or not (data_dir / "uploads").is_dir():
        return None
    return upload_store(data_dir, fsync=False).open_path(image_path)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(logits).argmax(1) == labels)) if len(labels) else float("nan")


def gate(parent: dict[str, float], child: dict[str, float], max_test_drop: float) -> tuple[bool, list[str]]:
    """(promote?, reasons): better on the held-out corrections, at most ``max_test_drop`` worse on the test set."""
    reasons = []
    ok = True
    if child["holdout_accuracy"] > parent["holdout_accuracy"]:
        reasons.append(
            f"held-out corrections: {100 * child['holdout_accuracy']:.2f}% > parent "
            f"{100 * parent['holdout_accuracy']:.2f}%"
        )
    else:
        ok = False
        reasons.append(
            f"not better on the held-out corrections: {100 * child['holdout_accuracy']:.2f}% vs parent "
            f"{100 * parent['holdout_accuracy']:.2f}%"
        )
    drop = parent["test_accuracy"] - child["test_accuracy"]
    if drop <= max_test_drop + 1e-12:
        reasons.append(
            f"test set: {100 * child['test_accuracy']:.2f}% vs parent {100 * parent['test_accuracy']:.2f}% "
            f"(allowed drop {100 * max_test_drop:.2f} points)"
        )
    else:
        ok = False
        reasons.append(
            f"loses {100 * drop:.2f} points on the test set ({100 * child['test_accuracy']:.2f}% vs parent "
            f"{100 * parent['test_accuracy']:.2f}%; at most {100 * max_test_drop:.2f} allowed)"
        )
    return ok, reasons


def batch_parts(config: FinetuneConfig) -> tuple[int, int]:
    """(corrections, replayed images) in each batch."""
    n_corr = max(1, min(config.batch_size - 1, round(config.batch_size * config.correction_share)))
    return n_corr, config.batch_size - n_corr


def correction_weights(net: Any, x_corr: np.ndarray, y_corr: np.ndarray, focus: float) -> np.ndarray:
    """How often each correction is drawn: ``1 - focus`` of the draws uniform, ``focus`` in proportion to
    the probability the parent gives the wrong answers (1 - its probability of the right label).

    The records hold every correction ever made. Those the parent already reads right were learnt in
    earlier fine-tunes; drawn uniformly, a new style gets a shrinking share of every batch as the records
    grow. Weighted this way, the draws go where the parent is still wrong, and the uniform part keeps
    rehearsing what it learnt before."""
    from digitrec.runtime.tf_loader import tf

    uniform = np.full(len(y_corr), 1.0 / max(1, len(y_corr)))
    if focus <= 0 or not len(y_corr):
        return uniform
    probs = np.concatenate(
        [tf.nn.softmax(net.logits(tf.constant(x_corr[i : i + 1000]))).numpy() for i in range(0, len(x_corr), 1000)]
    )
    wrong = 1.0 - probs[np.arange(len(y_corr)), y_corr].astype(np.float64)
    if wrong.sum() <= 0:
        return uniform
    weights = (1.0 - focus) * uniform + focus * wrong / wrong.sum()
    return weights / weights.sum()


def train_steps(replayed: int, config: FinetuneConfig) -> int:
    """Training steps: ``config.steps``, or ``epochs`` passes over the replayed images when that is set."""
    if config.epochs:
        return max(1, math.ceil(replayed / batch_parts(config)[1])) * config.epochs
    return config.steps


def train_on(
    net: Any,
    x_corr: np.ndarray,
    y_corr: np.ndarray,
    x_replay: np.ndarray,
    y_replay: np.ndarray,
    config: FinetuneConfig,
    augment: Any,
    label_smoothing: float,
    teacher: Any = None,
    correction_augment: Any = None,
) -> Any:
    """Continue training ``net`` on batches mixing corrections and replayed images; returns the EMA net.

    Each batch: ``correction_share`` corrections (drawn with replacement, warped with
    ``correction_augment``) and replayed training images (warped with ``augment``). The corrections are
    learnt by cross-entropy with their labels. On the replayed images the net learns to give the
    ``teacher``'s probabilities, softened by ``distill_temperature`` (learning without forgetting), and,
    with weight ``replay_labels``, their own labels: the teacher keeps how sure the model was and which
    digit came second, the labels keep it right where the new style pulls a dataset image across a
    boundary (a one with a flag is close to an American seven). With ``anchor``, the squared distance of
    the trainable weights from the parent's is added to the loss (L2-SP): the style is learnt with the
    least change to what every other input goes through.

    With ``freeze_batch_norm`` the batch norms normalise with the parent's statistics and do not update
    them: a third of every batch is a new style, and statistics of such mixed batches would shift
    what every dataset image is normalised with at inference; their scale and shift still learn.
    """
    from digitrec.learning.augment import NO_AUGMENT, random_affine
    from digitrec.learning.training import AdamW, Ema, ProgressBar, learning_rate
    from digitrec.model.network import INPUT_SIZE, DigitNet, pool_features
    from digitrec.runtime.tf_loader import tf

    variables, trainable = list(net.variables), list(net.trainable_variables)
    optimizer = AdamW(trainable, config.weight_decay)
    ema = Ema(variables, config.ema_decay)
    for shadow, v in zip(ema.shadow, variables):  # the average starts at the parent, not at zero
        shadow.assign(v)
    n_corr, n_replay = batch_parts(config)
    share = n_corr / config.batch_size
    total = train_steps(len(x_replay), config)
    warmup = max(1, total // 20)
    classes = net.spec.num_classes
    distill = config.distill if teacher is not None else 0.0
    replay_labels = config.replay_labels if distill > 0 else 1.0
    temperature = config.distill_temperature
    correction_augment = augment if correction_augment is None else correction_augment
    x_corr_t, y_corr_t = tf.constant(x_corr), tf.constant(y_corr)
    draw = correction_weights(net, x_corr, y_corr, config.focus)
    start = [tf.constant(v.numpy()) for v in trainable]  # the parent's weights (L2-SP's anchor)
    x_rep_t, y_rep_t = tf.constant(x_replay), tf.constant(y_replay)

    def forward(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        if not config.freeze_batch_norm:
            return net.logits(x, training=True, dropout_seed=seed)
        h = pool_features(net.block_outputs(x, training=False)[-1], net.spec)
        if net.spec.dropout > 0:
            h = tf.nn.experimental.stateless_dropout(h, rate=net.spec.dropout, seed=seed)
        return tf.matmul(h, net.dense_w) + net.dense_b

    def warp(x: tf.Tensor, spec: Any, seed: tf.Tensor) -> tf.Tensor:
        images = tf.reshape(x, [-1, INPUT_SIZE, INPUT_SIZE, 1])
        if spec != NO_AUGMENT:
            images = random_affine(images, spec, seed)
        return tf.reshape(images, [-1, INPUT_SIZE * INPUT_SIZE])

    @tf.function(reduce_retracing=True)
    def step(x_rep: tf.Tensor, y_rep: tf.Tensor, x_cor: tf.Tensor, y_cor: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        x_rep, x_cor = warp(x_rep, augment, seed), warp(x_cor, correction_augment, seed + 3)
        x = tf.concat([x_rep, x_cor], 0)
        y = tf.concat([y_rep, y_cor], 0)
        targets = tf.one_hot(y, classes) * (1.0 - label_smoothing) + label_smoothing / classes
        if distill > 0:
            soft = tf.nn.softmax(teacher.logits(x_rep) / temperature)
        with tf.GradientTape() as tape:
            logits = forward(x, seed + 7)
            hard = tf.nn.softmax_cross_entropy_with_logits(targets, logits)
            loss = share * tf.reduce_mean(hard[n_replay:])
            if replay_labels > 0:
                loss += (1.0 - share) * replay_labels * tf.reduce_mean(hard[:n_replay])
            if distill > 0:  # KL(teacher || student) at the temperature, scaled by T^2 (Hinton et al.)
                log_student = tf.nn.log_softmax(logits[:n_replay] / temperature)
                kl = tf.reduce_sum(soft * (tf.math.log(soft + 1e-12) - log_student), axis=1)
                loss += (1.0 - share) * distill * temperature**2 * tf.reduce_mean(kl)
            if config.anchor > 0:
                loss += config.anchor * tf.add_n([tf.reduce_sum(tf.square(v - s)) for v, s in zip(trainable, start)])
        grads = tape.gradient(loss, trainable)
        optimizer.apply(grads, trainable, learning_rate(optimizer.step, total, warmup, config.learning_rate))
        ema.update(variables, optimizer.step + 1000)  # past the EMA's warm-up: it starts from trained weights
        return loss

    rng = np.random.default_rng(config.seed)
    bar = ProgressBar(total, f"fine-tuning {config.name}", config.progress)
    loss_sum = 0.0
    for i in range(total):
        replay_idx = tf.constant(rng.integers(0, len(x_replay), n_replay).astype(np.int32))
        if config.focus > 0:
            corr_idx = tf.constant(rng.choice(len(x_corr), n_corr, p=draw).astype(np.int32))
        else:
            corr_idx = tf.constant(rng.integers(0, len(x_corr), n_corr).astype(np.int32))
        loss = step(
            tf.gather(x_rep_t, replay_idx),
            tf.gather(y_rep_t, replay_idx),
            tf.gather(x_corr_t, corr_idx),
            tf.gather(y_corr_t, corr_idx),
            tf.constant([config.seed, i], tf.int32),
        )
        loss_sum += float(loss)
        bar.update(i + 1, loss=loss_sum / (i + 1))
    result = DigitNet(net.spec)
    ema.copy_to(result.variables)
    return result


def refusal_sizes(share: float) -> Any:
    """The refusal head's training images for a fine-tuned version: ``share`` of each kind of the default.

    Fitting the head was most of a fine-tune's time when it learnt from as many images as the shipped
    head (preparing and rendering them, then their features). With half as many its threshold is fitted
    the same way, on the same held-out images, so it refuses as few digits; it refuses slightly fewer
    non-digits than a full-size head (BENCHMARKS.md, fine-tuning loop)."""
    from digitrec.learning.refusal import Sizes

    full = Sizes()
    kinds = (
        "own_raw",
        "own_rendered",
        "own_scrambled",
        "own_varied",
        "synthetic_per_family",
        "other_raw",
        "other_rendered",
    )
    return dataclasses.replace(full, **{kind: max(1, round(share * getattr(full, kind))) for kind in kinds})


def replay_indices(
    train_labels: np.ndarray, split: dict[str, Any] | None, replay: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """(replayed training-set indices, the parent's validation indices or None).

    When the parent declares a validation split, its images stay out of the replay: the child never
    trains on them either, and its temperature is fitted on them. Without one (legacy), any training
    image may be replayed, as before.
    """
    from digitrec.learning import validation

    if split is None:
        return np.random.default_rng(seed).permutation(len(train_labels))[:replay], None
    replayable, val_index = validation.rebuild(split, train_labels)
    return replayable[np.random.default_rng(seed).permutation(len(replayable))[:replay]], val_index


def shipped_ancestor(name: str, info: Any, models_dir: Path | None) -> Any:
    """The first version of ``info``'s lineage (trained from scratch, not fine-tuned): ``parent`` links
    followed back as far as those versions are still there."""
    from digitrec.model import versions

    seen = {info.id}
    while info.parent and info.parent not in seen:
        try:
            info = versions.get_version(name, info.parent, models_dir)
        except versions.VersionNotFoundError:
            break
        seen.add(info.id)
    return info


def finetune(config: FinetuneConfig, store: Any, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole loop; returns what happened (version, figures, gate decision, promoted or not)."""
    from digitrec.learning import datasets, validation
    from digitrec.learning.augment import (
        DIGITS_AUGMENT,
        FASHION_AUGMENT,
        STRONG_DIGITS_AUGMENT,
        STRONG_FASHION_AUGMENT,
    )
    from digitrec.model import calibration, checkpoints, versions
    from digitrec.model.inputs import to_inputs
    from digitrec.model.recognizer import DigitRecognizer
    from digitrec.runtime.tf_loader import tf

    started = time.perf_counter()
    parent_info = versions.promoted_version(config.name, config.models_dir)
    parent = DigitRecognizer()
    parent.Load_Model(parent_info.path, checkpoints.CHECKPOINT_PREFIX)
    dataset = calibration.dataset_of(parent.metadata)
    log(f"{config.name}: parent version {parent_info.id} ({parent_info.path})")

    corrections = load_corrections(
        store,
        config.name,
        lambda data: parent.prepare(data).tensor,
        config.data_dir,
        config.holdout_percent,
        read=getattr(parent, "read", None),
        max_client_share=config.max_client_share,
    )
    trust = corrections.selection
    log(
        f"corrections by who made them: {trust.used_by_kind or 'none'}; {trust.rejected} rejected by a reviewer, "
        f"{trust.capped} left out by the cap of {trust.max_client_share:.0%} per anonymous client"
    )
    if corrections.total < config.min_corrections:
        raise FinetuneError(
            f"only {corrections.total} corrected record(s) with a usable image for model {config.name!r} "
            f"(at least {config.min_corrections} needed, --min-corrections); correct more predictions first"
            + (f"; {len(corrections.skipped)} skipped, e.g. {corrections.skipped[0]}" if corrections.skipped else "")
        )
    if not len(corrections.y_train) or not len(corrections.y_holdout):
        raise FinetuneError(
            f"{corrections.total} corrections give {len(corrections.y_train)} to train on and "
            f"{len(corrections.y_holdout)} to judge with; both must be non-empty (change --holdout-percent)"
        )
    log(
        f"corrections: {len(corrections.y_train)} to train on, {len(corrections.y_holdout)} held out "
        f"({corrections.from_store} images from the store, {corrections.from_files} from upload files, "
        f"{len(corrections.skipped)} skipped; {corrections.readings_used} corrected reading(s) gave "
        f"{corrections.reading_digits} digit(s), {corrections.readings_skipped} skipped)"
    )

    x_train, y_train = datasets.load_split(dataset, "train", config.datasets_dir)
    x_test, y_test = datasets.load_split(dataset, "test", config.datasets_dir)
    split = validation.declared(parent.metadata)
    pick, val_index = replay_indices(y_train, split, config.replay, config.seed)
    x_replay, y_replay = to_inputs(x_train[pick]), y_train[pick].astype(np.int32)
    x_test_f = to_inputs(x_test)

    net = parent._network
    teacher_info, teacher_net = parent_info, net
    if config.distill > 0 and config.distill_from == "shipped":
        teacher_info = shipped_ancestor(config.name, parent_info, config.models_dir)
        if teacher_info.id != parent_info.id:
            teacher = DigitRecognizer()
            teacher.Load_Model(teacher_info.path, checkpoints.CHECKPOINT_PREFIX)
            teacher_net = teacher._network
    log(f"teacher on the replayed images: version {teacher_info.id}")
    child_net = type(net)(net.spec)
    for src, dst in zip(net.variables, child_net.variables):
        dst.assign(src)
    augment = FASHION_AUGMENT if dataset == "fashion" else DIGITS_AUGMENT
    correction_augment = augment
    if config.strong_augment:
        correction_augment = STRONG_FASHION_AUGMENT if dataset == "fashion" else STRONG_DIGITS_AUGMENT
    smoothing = float(parent.metadata.get("training", {}).get("label_smoothing", 0.05))
    t0 = time.perf_counter()
    child_net = train_on(
        child_net,
        corrections.x_train,
        corrections.y_train,
        x_replay,
        y_replay,
        config,
        augment,
        smoothing,
        teacher=teacher_net,
        correction_augment=correction_augment,
    )
    train_seconds = time.perf_counter() - t0

    def logits_of(model: Any, x: np.ndarray) -> np.ndarray:
        return np.concatenate([model.logits(tf.constant(x[i : i + 1000])).numpy() for i in range(0, len(x), 1000)])

    parent_test, child_test = logits_of(net, x_test_f), logits_of(child_net, x_test_f)
    figures = {
        "parent": {
            "holdout_accuracy": accuracy(logits_of(net, corrections.x_holdout), corrections.y_holdout),
            "test_accuracy": accuracy(parent_test, y_test),
        },
        "child": {
            "holdout_accuracy": accuracy(logits_of(child_net, corrections.x_holdout), corrections.y_holdout),
            "test_accuracy": accuracy(child_test, y_test),
        },
    }
    passed, reasons = gate(figures["parent"], figures["child"], config.max_test_drop)
    folder_name = datasets.dataset_info(dataset).folder
    if split is not None:
        x_val = to_inputs(x_train[val_index])
        block = calibration.calibrate_on_validation(
            logits_of(child_net, x_val), y_train[val_index], child_test, y_test, folder_name, split
        )
        log(f"calibration: fitted on the validation split ({len(val_index)} images)")
    else:
        block = calibration.calibrate(child_test, y_test, folder_name)
        log("calibration: the parent has no validation split; fitted on the fixed half of the test set (legacy)")

    folder = versions.new_version_dir(config.name, config.models_dir)
    tf.train.Checkpoint(model=child_net).write(str(folder / checkpoints.CHECKPOINT_PREFIX))
    predicted = child_test.argmax(1)
    class_names = parent.class_names
    # the parent's refusal head read the parent's features: the child has none until it is fitted anew
    metadata = {k: v for k, v in parent.metadata.items() if k not in ("calibration", "domain", "training", "command")}
    metadata.update(
        {
            "name": config.name,
            "version": folder.name,
            "parent": parent_info.id,
            "corrections_used": int(len(corrections.y_train)),
            "corrections_held_out": int(len(corrections.y_holdout)),
            "test_accuracy": figures["child"]["test_accuracy"],
            "test_examples": int(len(y_test)),
            "per_class_accuracy": {
                class_names[c]: float(np.mean(predicted[y_test == c] == c)) for c in range(len(class_names))
            },
            "evaluation": {
                **{f"{k}_parent": v for k, v in figures["parent"].items()},
                **figures["child"],
                "gate_passed": passed,
                "gate": reasons,
            },
            "calibration": block,
            "finetuning": {
                "parent": parent_info.id,
                "corrections_train": int(len(corrections.y_train)),
                "corrections_held_out": int(len(corrections.y_holdout)),
                "images_from_store": corrections.from_store,
                "images_from_files": corrections.from_files,
                "skipped": len(corrections.skipped),
                "readings_used": corrections.readings_used,
                "reading_digits": corrections.reading_digits,
                "readings_skipped": corrections.readings_skipped,
                "corrections_by_kind": trust.lineage(),
                "replayed_images": int(len(x_replay)),
                "replay_excludes_validation": split is not None,
                "epochs": config.epochs,
                "steps": train_steps(len(x_replay), config),
                "correction_share": config.correction_share,
                "focus": config.focus,
                "distill": config.distill,
                "distill_temperature": config.distill_temperature,
                "teacher": teacher_info.id if config.distill > 0 else None,
                "replay_labels": config.replay_labels,
                "anchor": config.anchor,
                "freeze_batch_norm": config.freeze_batch_norm,
                "correction_augmentation": correction_augment.to_json(),
                "learning_rate": config.learning_rate,
                "batch_size": config.batch_size,
                "ema_decay": config.ema_decay,
                "label_smoothing": smoothing,
                "augmentation": augment.to_json(),
                "seed": config.seed,
                "seconds": round(train_seconds, 1),
            },
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": config.command,
        }
    )
    checkpoints.write_metadata(folder, metadata)  # last: the folder counts as a version from here on
    refusal, refusal_seconds = None, 0.0
    if (parent.metadata.get("domain") or {}).get("method") == "head":
        # A refusal head reads one network's features: the child gets its own before it can serve.
        from digitrec.learning.refusal import fit_domain_head

        t0 = time.perf_counter()
        # The corrections it trained on count as in-domain, so the style it learnt is not refused.
        sizes = refusal_sizes(config.refusal_share)
        refusal = fit_domain_head(folder, config.datasets_dir, sizes=sizes, confirmed=corrections.x_train, log=log)
        refusal_seconds = time.perf_counter() - t0
        log(f"refusal head fitted for {folder.name} in {refusal_seconds:.0f} s")
    promoted = False
    if passed and config.promote:
        versions.promote(config.name, folder.name, config.models_dir, reason=f"finetune: {reasons[0]}")
        promoted = True
    return {
        "name": config.name,
        "version": folder.name,
        "path": str(folder),
        "parent": parent_info.id,
        "corrections_train": int(len(corrections.y_train)),
        "corrections_held_out": int(len(corrections.y_holdout)),
        "skipped": corrections.skipped,
        "corrections_by_kind": trust.lineage(),
        **{f"parent_{k}": v for k, v in figures["parent"].items()},
        **figures["child"],
        "temperature": block["temperature"],
        "calibration_fit_split": block["fit_split"],
        "ece_before": block["ece_before"],
        "ece_after": block["ece_after"],
        "gate_passed": passed,
        "reasons": reasons,
        "promoted": promoted,
        "refusal_head": None if refusal is None else refusal["figures"],
        "seconds": round(time.perf_counter() - started, 1),
        "training_seconds": round(train_seconds, 1),
        "refusal_head_seconds": round(refusal_seconds, 1),
    }
