"""Training loop: AdamW with warm-up + cosine schedule, augmentation, and an exponential moving average.

The shipped weights are the moving average (EMA) of the trained weights, decided before training
(not picked by test score). ``validation`` training images (equal per class, ``digitrec.learning.validation``)
are held out and never trained on; after training, the confidence temperature is fitted on them and
the ECE reported on the full test set (``digitrec.model.calibration``). A training state (network, EMA,
optimizer, epoch) is written after every epoch under ``<output>/training_state`` so ``--resume`` can
continue an interrupted or finished run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from digitrec.errors import ConfigurationError, ModelNotFoundError
from digitrec.learning import datasets, validation
from digitrec.learning.augment import DIGITS_AUGMENT, FASHION_AUGMENT, NO_AUGMENT, AugmentSpec, random_affine
from digitrec.model import checkpoints
from digitrec.model.inputs import to_inputs
from digitrec.model.network import ARCHITECTURE, INPUT_SIZE, DigitNet, NetworkSpec
from digitrec.runtime.tf_loader import tf

STATE_DIR = "training_state"


@dataclasses.dataclass
class TrainConfig:
    dataset: str = "mnist"
    output: Path = Path("data/trained_models/digits")
    data_dir: Path | None = None
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    ema_decay: float = 0.999
    seed: int = 0
    augment: bool = True
    limit: int | None = None  # use only the first N training images, after the validation split (smoke tests)
    validation: int = 5000  # training images held out (equal per class) to calibrate on; 0: none
    validation_seed: int = 0
    resume: bool = False
    download: bool = False
    progress: bool = True
    name: str | None = None
    command: str = ""  # the command line that reproduces this run, recorded in model.json
    spec: NetworkSpec = dataclasses.field(default_factory=NetworkSpec)


class AdamW(tf.Module):
    """Adam with decoupled weight decay (decay applied to convolution and dense kernels only)."""

    def __init__(self, variables: list[tf.Variable], weight_decay: float, beta1: float = 0.9, beta2: float = 0.999):
        super().__init__(name="adamw")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.decay_mask = [len(v.shape) > 1 for v in variables]
        self.weight_decay, self.beta1, self.beta2 = weight_decay, beta1, beta2

    def apply(self, grads: list[tf.Tensor], variables: list[tf.Variable], lr: tf.Tensor) -> None:
        self.step.assign_add(1)
        t = tf.cast(self.step, tf.float32)
        correction = tf.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        for var, g, m, v, decay in zip(variables, grads, self.m, self.v, self.decay_mask):
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            update = correction * m / (tf.sqrt(v) + 1e-7)
            if decay:
                update += self.weight_decay * var
            var.assign_sub(lr * update)


class Ema(tf.Module):
    """Shadow copies of every network variable (weights and batch-norm statistics)."""

    def __init__(self, variables: list[tf.Variable], decay: float):
        super().__init__(name="ema")
        self.shadow = [tf.Variable(v, trainable=False) for v in variables]
        self.decay = decay

    def update(self, variables: list[tf.Variable], step: tf.Tensor) -> None:
        # Warm-up: a short average early on, so the EMA is not dominated by the random initialisation.
        d = tf.minimum(self.decay, (1.0 + tf.cast(step, tf.float32)) / (10.0 + tf.cast(step, tf.float32)))
        for s, v in zip(self.shadow, variables):
            s.assign(d * s + (1.0 - d) * v)

    def copy_to(self, variables: list[tf.Variable]) -> None:
        for s, v in zip(self.shadow, variables):
            v.assign(s)


def learning_rate(step: tf.Tensor, total_steps: int, warmup_steps: int, peak: float) -> tf.Tensor:
    step = tf.cast(step, tf.float32)
    warm = peak * step / float(max(1, warmup_steps))
    progress = (step - warmup_steps) / float(max(1, total_steps - warmup_steps))
    cosine = 0.5 * peak * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
    return tf.where(step < warmup_steps, warm, cosine)


def predict_proba(net: tf.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    return np.concatenate([net(x[i : i + batch_size]).numpy() for i in range(0, len(x), batch_size)])


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0

    def update(self, done: int, **metrics: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < self.total and now - self.last_print < (0.2 if self.tty else 15.0):
            return
        self.last_print = now
        width = 30
        filled = int(width * done / self.total)
        bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
        text = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        line = f"{self.label} [{bar}] {done}/{self.total} {text} {now - self.start:.0f}s"
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        if self.tty and done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _augment_spec(config: TrainConfig) -> AugmentSpec:
    if not config.augment:
        return NO_AUGMENT
    return FASHION_AUGMENT if datasets.dataset_info(config.dataset).name == "fashion" else DIGITS_AUGMENT


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train (or resume) and write the checkpoint, ``model.json`` and ``training_curve.png``."""
    info = datasets.dataset_info(config.dataset)
    x_train, y_train = datasets.load_split(info.name, "train", config.data_dir, config.download)
    x_test, y_test = datasets.load_split(info.name, "test", config.data_dir, config.download)
    split = None
    x_val_f = y_val = None
    if config.validation:
        train_index, val_index = validation.split_indices(y_train, config.validation, config.validation_seed)
        split = validation.describe(info.folder, y_train, val_index, config.validation_seed)
        x_val_f, y_val = to_inputs(x_train[val_index]), y_train[val_index]
        x_train, y_train = x_train[train_index], y_train[train_index]
        log(f"validation split: {len(val_index)} training images held out ({split['per_class']} per class)")
    if config.limit:
        x_train, y_train = x_train[: config.limit], y_train[: config.limit]
    x_train_f, x_test_f = to_inputs(x_train), to_inputs(x_test)
    y_train_t = tf.constant(y_train.astype(np.int32))
    x_train_t = tf.constant(x_train_f)

    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    net = DigitNet(config.spec, seed=config.seed)
    variables = list(net.variables)
    trainable = list(net.trainable_variables)
    optimizer = AdamW(trainable, config.weight_decay)
    ema = Ema(variables, config.ema_decay)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    history: list[dict] = []
    state = tf.train.Checkpoint(network=net, optimizer=optimizer, ema=ema, epoch=epoch_var)
    state_manager = tf.train.CheckpointManager(state, output / STATE_DIR, max_to_keep=1)
    if config.resume:
        if state_manager.latest_checkpoint:
            state.restore(state_manager.latest_checkpoint).assert_existing_objects_matched()
            history = json.loads((output / STATE_DIR / "history.json").read_text())
            log(f"resumed from {state_manager.latest_checkpoint} after epoch {int(epoch_var.numpy())}")
        elif checkpoints.is_model_dir(output):
            previous = validation.declared(checkpoints.read_metadata(output))
            if (previous or {}).get("indices_sha256") != (split or {}).get("indices_sha256"):
                raise ConfigurationError(
                    f"--resume: {output} was trained with a different validation split "
                    f"({(previous or {}).get('size', 0)} images) than this run's ({config.validation}); "
                    "its images would not be held out. Use the same --validation and --validation-seed."
                )
            tf.train.Checkpoint(model=net).read(str(output / checkpoints.CHECKPOINT_PREFIX)).expect_partial()
            for s, v in zip(ema.shadow, variables):
                s.assign(v)
            log(f"no training state in {output}; fine-tuning from its checkpoint with a fresh optimizer")
        else:
            raise ModelNotFoundError(f"--resume: nothing to resume in {output}")

    n = len(x_train_f)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(steps_per_epoch, total_steps // 10 + 1)
    augment = _augment_spec(config)
    smoothing = config.label_smoothing
    num_classes = config.spec.num_classes

    @tf.function(reduce_retracing=True)
    def train_step(x: tf.Tensor, y: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.reshape(x, [-1, INPUT_SIZE, INPUT_SIZE, 1])
        if augment != NO_AUGMENT:
            images = random_affine(images, augment, seed)
        x = tf.reshape(images, [-1, INPUT_SIZE * INPUT_SIZE])
        targets = tf.one_hot(y, num_classes) * (1.0 - smoothing) + smoothing / num_classes
        step = tf.cast(optimizer.step, tf.float32)
        bn_momentum = tf.minimum(config.spec.batch_norm_momentum, (1.0 + step) / (10.0 + step))
        with tf.GradientTape() as tape:
            logits = net.logits(x, training=True, dropout_seed=seed + 7, bn_momentum=bn_momentum)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
        grads = tape.gradient(loss, trainable)
        optimizer.apply(grads, trainable, learning_rate(optimizer.step, total_steps, warmup, config.learning_rate))
        ema.update(variables, optimizer.step)
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        return loss, accuracy

    eval_net = DigitNet(config.spec, seed=config.seed)
    start_epoch = int(epoch_var.numpy())
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed + start_epoch)
    for epoch in range(start_epoch, config.epochs):
        order = tf.constant(rng.permutation(n).astype(np.int32))
        bar = ProgressBar(steps_per_epoch, f"epoch {epoch + 1}/{config.epochs}", config.progress)
        loss_sum = acc_sum = 0.0
        t0 = time.perf_counter()
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            seed = tf.constant([config.seed, epoch * steps_per_epoch + step], dtype=tf.int32)
            loss, acc = train_step(tf.gather(x_train_t, idx), tf.gather(y_train_t, idx), seed)
            loss_sum += float(loss)
            acc_sum += float(acc)
            bar.update(step + 1, loss=loss_sum / (step + 1), acc=acc_sum / (step + 1))
        for src, dst in zip(ema.shadow, eval_net.variables):
            dst.assign(src)
        test_acc = float(np.mean(predict_proba(eval_net, x_test_f).argmax(1) == y_test))
        epoch_seconds = time.perf_counter() - t0
        history.append(
            {
                "epoch": epoch + 1,
                "loss": loss_sum / steps_per_epoch,
                "train_accuracy": acc_sum / steps_per_epoch,
                "test_accuracy": test_acc,
                "seconds": epoch_seconds,
            }
        )
        val_text = ""
        if x_val_f is not None:
            history[-1]["validation_accuracy"] = float(np.mean(predict_proba(eval_net, x_val_f).argmax(1) == y_val))
            val_text = f" validation acc {history[-1]['validation_accuracy']:.4f}"
        log(
            f"epoch {epoch + 1}: loss {history[-1]['loss']:.4f} train acc {history[-1]['train_accuracy']:.4f} "
            f"test acc (EMA) {test_acc:.4f}{val_text} in {epoch_seconds:.0f}s"
        )
        epoch_var.assign(epoch + 1)
        state_manager.save()
        (output / STATE_DIR / "history.json").write_text(json.dumps(history))

    # Export the EMA weights as the model checkpoint.
    for src, dst in zip(ema.shadow, eval_net.variables):
        dst.assign(src)
    tf.train.Checkpoint(model=eval_net).write(str(output / checkpoints.CHECKPOINT_PREFIX))
    proba = predict_proba(eval_net, x_test_f)
    predicted = proba.argmax(1)
    per_class = {info.class_names[c]: float(np.mean(predicted[y_test == c] == c)) for c in range(num_classes)}
    metadata = {
        "name": config.name or output.name,
        "version": dt.date.today().isoformat(),
        "architecture": ARCHITECTURE,
        "params": config.spec.to_json(),
        "parameter_count": int(sum(int(np.prod(v.shape)) for v in eval_net.trainable_variables)),
        "multiply_adds": config.spec.multiply_adds(),
        "class_names": info.class_names,
        "dataset": info.folder,
        "input": {
            "shape": [INPUT_SIZE * INPUT_SIZE],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "layout": "28x28 row-major, white (1.0) foreground on black (0.0), as in MNIST",
            "style": "garment" if info.name == "fashion" else "digit",
            "preprocessing": (
                "digitrec.imaging.preprocess: ink map, crop, longest side 28 px, bounding box centred"
                if info.name == "fashion"
                else "digitrec.imaging.preprocess: ink map, crop, longest side 20 px, centre of mass in 28x28"
            ),
        },
        "test_accuracy": float(np.mean(predicted == y_test)),
        "test_examples": int(len(y_test)),
        "per_class_accuracy": per_class,
        "training": {
            "train_examples": int(n),
            "validation_examples": int(len(y_val)) if y_val is not None else 0,
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "optimizer": f"AdamW lr={config.learning_rate} wd={config.weight_decay}, warm-up + cosine",
            "label_smoothing": smoothing,
            "ema_decay": config.ema_decay,
            "augmentation": augment.to_json(),
            "seed": config.seed,
            "seconds": round(sum(h["seconds"] for h in history), 1),
            "seconds_this_run": round(time.perf_counter() - started, 1),
            "history": history,
            "machine": "2-core x86-64 CPU",
        },
        "tensorflow_version": tf.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": config.command,
        "checkpoint": checkpoints.CHECKPOINT_PREFIX,
    }
    if split is not None:
        metadata["validation"] = split
    checkpoints.write_metadata(output, metadata)
    if split is not None:
        # Fitted through the recognizer (the graph and precision that serve), on the validation split;
        # the ECE is reported on the full test set.
        from digitrec.learning.calibrate import calibrate_model_dir

        metadata["calibration"] = calibrate_model_dir(output, config.data_dir, config.download)
        block = metadata["calibration"]
        log(
            f"calibration: temperature {block['temperature']:.4f} fitted on the validation split; "
            f"test ECE {100 * block['ece_before']:.2f}% -> {100 * block['ece_after']:.2f}%"
        )
    from digitrec.learning.plots import training_curve_png

    training_curve_png(history, output / "training_curve.png", title=f"{metadata['name']} ({info.folder})")
    return metadata
