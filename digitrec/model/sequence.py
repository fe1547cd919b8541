"""The sequence reader: a blob of ink that may hold several touching digits -> its digits, uncut.

Where neighbours touch or overlap, no cut leaves each digit whole: a 1 pressed along a 0 shares
pixels with it, so a segmentation reader must guess. This reader looks at the whole blob instead: a
small convolutional network over the blob's ink mask, scaled to ``HEIGHT`` rows, gives for every
``STRIDE`` columns the probabilities of the ten digits and of "no new digit here" (blank), and is
trained with CTC (connectionist temporal classification) loss, which needs only each strip's digits,
not where they are. Decoding takes the best class of every column, merges repeats and drops blanks;
each digit's columns say where it lies in the blob.

A plain ``tf.Module`` like the digit network; ``model.json`` beside the checkpoint holds its shape
(``SequenceSpec``) and how it was trained (``digitrec.learning.sequences``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from digitrec.errors import CheckpointError
from digitrec.runtime.tf_loader import tf

HEIGHT = 32  # rows of the network's input; the blob's ink fills the middle INNER rows
INNER = 28
STRIDE = 4  # input columns per output column
DIGITS = 10
BLANK = DIGITS  # the CTC blank is the last class
ARCHITECTURE = "digitrec-sequence-ctc"
PREFIX = "model"
METADATA_FILE = "model.json"


def strip_input(mask: np.ndarray) -> np.ndarray:
    """A blob's 0/1 ink mask (cropped to its ink) -> float32 (HEIGHT, W) in [0, 1], W a multiple of
    ``STRIDE``: scaled to ``INNER`` rows keeping its aspect, with a margin of blank paper."""
    h, w = mask.shape
    scale = INNER / max(h, 1)
    width = max(1, round(w * scale))
    small = cv2.resize(mask.astype(np.float32), (width, INNER), interpolation=cv2.INTER_AREA)
    margin = (HEIGHT - INNER) // 2
    total = -(-(width + 2 * margin) // STRIDE) * STRIDE
    out = np.zeros((HEIGHT, total), np.float32)
    out[margin : margin + INNER, margin : margin + width] = np.clip(small, 0.0, 1.0)
    return out


def input_scale(mask_height: int) -> float:
    """Input columns per pixel of the blob (``strip_input``'s scale), to map columns back to pixels."""
    return INNER / max(mask_height, 1)


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """Convolution widths (2x2, 2x2, 2x1 pooling after the first three), then temporal convolutions."""

    convs: tuple[int, ...] = (16, 32, 48, 64)
    temporal: tuple[int, ...] = (128, 128)
    kernel: int = 5  # of each temporal convolution, in output columns

    def to_json(self) -> dict[str, Any]:
        return {"convs": list(self.convs), "temporal": list(self.temporal), "kernel": self.kernel}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SequenceSpec:
        return cls(tuple(data["convs"]), tuple(data["temporal"]), int(data["kernel"]))


def _he(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator) -> tf.Variable:
    return tf.Variable(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32))


class SequenceNet(tf.Module):
    """(B, HEIGHT, W) ink -> (B, W / STRIDE, DIGITS + 1) logits, one row per ``STRIDE`` columns."""

    def __init__(self, spec: SequenceSpec = SequenceSpec(), seed: int = 0, name: str = "sequence_net"):
        super().__init__(name=name)
        self.spec = spec
        rng = np.random.default_rng(seed)
        self.conv_kernels, self.conv_biases = [], []
        channels = 1
        for width in spec.convs:
            self.conv_kernels.append(_he((3, 3, channels, width), 9 * channels, rng))
            self.conv_biases.append(tf.Variable(np.zeros(width, np.float32)))
            channels = width
        features = channels * (HEIGHT // 8)
        self.temporal_kernels, self.temporal_biases = [], []
        for width in spec.temporal:
            self.temporal_kernels.append(_he((spec.kernel, features, width), spec.kernel * features, rng))
            self.temporal_biases.append(tf.Variable(np.zeros(width, np.float32)))
            features = width
        self.out_kernel = tf.Variable(
            rng.normal(0.0, np.sqrt(1.0 / features), (features, DIGITS + 1)).astype(np.float32)
        )
        self.out_bias = tf.Variable(np.zeros(DIGITS + 1, np.float32))

    def logits(self, x: tf.Tensor, dropout: float = 0.0) -> tf.Tensor:
        h = x[..., None]
        pools = ((2, 2), (2, 2), (2, 1))
        for index, (kernel, bias) in enumerate(zip(self.conv_kernels, self.conv_biases)):
            h = tf.nn.relu(tf.nn.conv2d(h, kernel, 1, "SAME") + bias)
            if index < len(pools):
                size = pools[index]
                h = tf.nn.max_pool2d(h, size, size, "VALID")
        shape = tf.shape(h)  # (B, HEIGHT / 8, W / 4, C)
        h = tf.reshape(tf.transpose(h, [0, 2, 1, 3]), [shape[0], shape[2], shape[1] * h.shape[-1]])
        for kernel, bias in zip(self.temporal_kernels, self.temporal_biases):
            if dropout:
                h = tf.nn.dropout(h, dropout)
            h = tf.nn.relu(tf.nn.conv1d(h, kernel, 1, "SAME") + bias)
        return tf.einsum("btf,fc->btc", h, self.out_kernel) + self.out_bias

    @tf.function(input_signature=[tf.TensorSpec([None, HEIGHT, None], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Inference: per-column probabilities."""
        return tf.nn.softmax(self.logits(x), axis=-1)


def batch(strips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Strips of several widths -> one zero-padded (B, HEIGHT, W) array and each strip's output columns."""
    width = max(s.shape[1] for s in strips)
    out = np.zeros((len(strips), HEIGHT, width), np.float32)
    for i, s in enumerate(strips):
        out[i, :, : s.shape[1]] = s
    return out, np.asarray([s.shape[1] // STRIDE for s in strips], np.int32)


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A best-path reading of one strip: its digits, each digit's probability (the highest of its
    columns), the output columns it spans (first, last) and the class probabilities of its most
    certain column, and the probability of the whole path."""

    labels: list[int]
    confidences: list[float]
    spans: list[tuple[int, int]]
    path_probability: float
    probabilities: list[np.ndarray] = dataclasses.field(default_factory=list)


def decode(probabilities: np.ndarray) -> Decoded:
    """(T, DIGITS + 1) column probabilities -> the best path with repeats merged and blanks dropped."""
    best = probabilities.argmax(axis=1)
    labels, confidences, spans, rows = [], [], [], []
    previous = BLANK
    for t, label in enumerate(best.tolist()):
        p = float(probabilities[t, label])
        if label != BLANK and label == previous:
            if p > confidences[-1]:
                confidences[-1], rows[-1] = p, probabilities[t]
            spans[-1] = (spans[-1][0], t)
        elif label != BLANK:
            labels.append(label)
            confidences.append(p)
            spans.append((t, t))
            rows.append(probabilities[t])
        previous = label
    path = float(np.exp(np.log(np.maximum(probabilities.max(axis=1), 1e-12)).sum()))
    return Decoded(labels, confidences, spans, path, rows)


class SequenceReader:
    """A loaded sequence network: ``read(masks)`` decodes blobs in one batch."""

    def __init__(self, network: SequenceNet, metadata: dict[str, Any]):
        self.network = network
        self.metadata = metadata

    @classmethod
    def load(cls, model_dir: str | Path) -> SequenceReader:
        model_dir = Path(model_dir)
        try:
            metadata = json.loads((model_dir / METADATA_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{model_dir}: no readable {METADATA_FILE} ({exc})") from None
        if metadata.get("architecture") != ARCHITECTURE:
            raise CheckpointError(f"{model_dir}: not a sequence reader ({metadata.get('architecture')!r})")
        network = SequenceNet(SequenceSpec.from_json(metadata["params"]))
        try:
            tf.train.Checkpoint(model=network).read(str(model_dir / PREFIX)).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as exc:
            raise CheckpointError(f"{model_dir}: checkpoint does not match its model.json ({exc})") from None
        return cls(network, metadata)

    def read(self, masks: list[np.ndarray]) -> list[Decoded]:
        """0/1 ink masks of blobs (each cropped to its ink) -> their best-path readings."""
        if not masks:
            return []
        x, columns = batch([strip_input(m) for m in masks])
        probabilities = self.network(tf.constant(x)).numpy()
        return [decode(p[:n]) for p, n in zip(probabilities, columns)]


def save(network: SequenceNet, model_dir: str | Path, metadata: dict[str, Any]) -> None:
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(model=network).write(str(model_dir / PREFIX))
    full = {"architecture": ARCHITECTURE, "params": network.spec.to_json(), **metadata}
    (model_dir / METADATA_FILE).write_text(json.dumps(full, indent=2) + "\n")
