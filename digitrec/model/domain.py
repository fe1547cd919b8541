"""Refusal: does an input look like one of the model's classes at all (a digit, a garment)?

A classifier's softmax always names one of its classes, and is confidently wrong on a letter or a
blob. The *domain score* answers a different question, "is this one of my classes?", and is higher
for inputs more like the model's classes; ``in_domain`` is ``domain_score >= threshold``.

Two methods, named in model.json's ``"domain"`` block:

- ``"head"``: a small "none of these" network on the frozen classifier's pooled features, trained
  with outlier exposure (the model's own training images against synthetic letters, scribbles,
  shapes and textures and another dataset's images; see ``digitrec.learning.refusal``). Its score is
  the log-odds that the input is in the domain. The classifier's weights, labels and calibrated
  confidences are untouched: the head only reads its features. Its variables live in the model's
  checkpoint under ``domain_head``.
- ``"energy"``: for checkpoints without a head, the negative free energy ``logsumexp(logits)`` of the
  raw logits (Liu et al., 2020), which is larger where the network's features fire strongly for
  some class. With a fitted threshold it refuses; without a ``"domain"`` block there is no threshold
  and every input counts as in the domain (``threshold`` is -inf), so old checkpoints answer as before.

The head's inputs (its ``layout``) are pooled over the image from every convolution block's output,
plus the raw logits. The early blocks matter: pooled over the image, the last block alone describes a
filled star or an arrow much like a digit.

- ``"pooled_mean_max"``: the mean and the maximum of the map each block hands on (an early block's
  output after its 2x2 max-pool, which the next block reads anyway; the last block's output as it
  is), and the logits. Taking them after the pool reads a quarter of the values, with the same
  maximum, so in inference the head adds a few small ops to the classifier's graph.
- ``"pooled_max"``: the maxima and the last block's mean only (two ops fewer; trained the same way,
  it refused 94.4 % of the digits model's test non-digits, against 95.1 %).
- ``"final_mean_max"``: the mean and the maximum of the two maps at the network's final resolution
  only: the map the last block reads (the block before's output after its max-pool) and the last
  block's output, side by side as one map, so one mean and one maximum cover both. It skips the
  first block's larger map, and in inference adds a concat and two reductions to the classifier's
  graph where ``pooled_mean_max`` adds six reductions; but with 64 hidden units it refused 94.9 % of
  the digits model's test non-digits, and 1.8 % of other writers' digits (0.8 % for the shipped
  head): the first block's map matters.
- ``"block_mean_max"``: the mean and the maximum of every block's output before its pool, and the
  logits (the first heads; a ``"domain"`` block without a layout has this one).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from digitrec.errors import CheckpointError
from digitrec.runtime.tf_loader import tf

METHODS = ("head", "energy")
LAYOUTS = ("pooled_mean_max", "pooled_max", "final_mean_max", "block_mean_max")
DEFAULT_LAYOUT = "pooled_mean_max"
DEFAULT_HIDDEN = 128
OLD_LAYOUT, OLD_HIDDEN = "block_mean_max", 128  # what a "domain" block that names neither had


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """What model.json's ``"domain"`` block says about scoring (its figures stay in the block)."""

    method: str = "energy"
    threshold: float = -math.inf  # -inf: nothing fitted, nothing refused
    hidden: int = DEFAULT_HIDDEN
    layout: str = DEFAULT_LAYOUT

    @property
    def fitted(self) -> bool:
        return math.isfinite(self.threshold)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> DomainSpec:
        block = metadata.get("domain")
        if block is None:
            return cls()
        try:
            method, threshold = str(block["method"]), float(block["threshold"])
            hidden = int(block.get("hidden", OLD_HIDDEN))
            layout = str(block.get("layout", OLD_LAYOUT))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"model.json domain block needs a method and a numeric threshold: {exc}") from None
        if method not in METHODS:
            raise CheckpointError(f"model.json domain method must be one of {METHODS}, not {method!r}")
        if not math.isfinite(threshold) or hidden < 1:
            raise CheckpointError(f"model.json domain block has a bad threshold or hidden size: {block!r}")
        if layout not in LAYOUTS:
            raise CheckpointError(f"model.json domain layout must be one of {LAYOUTS}, not {layout!r}")
        return cls(method, threshold, hidden, layout)


def handed_on(block_maps: list[tf.Tensor], layout: str) -> list[tf.Tensor]:
    """Each block's output (N, H, W, C) -> the maps ``layout`` pools: as they are for
    ``block_mean_max``; else each early block's after the 2x2 max-pool that feeds the next block."""
    if layout == "block_mean_max":
        return block_maps
    pooled = [tf.nn.max_pool2d(m, ksize=2, strides=2, padding="VALID") for m in block_maps[:-1]]
    return [*pooled, block_maps[-1]]


def pooled_parts(maps: list[tf.Tensor], layout: str) -> list[tf.Tensor]:
    """The (N, C) global means and maxima of ``layout``, in the maps' dtype (bfloat16 sums in float32)."""
    if layout == "pooled_max":
        return [tf.reduce_max(m, axis=[1, 2]) for m in maps] + [tf.reduce_mean(maps[-1], axis=[1, 2])]
    if layout == "final_mean_max":
        final = tf.concat(maps[-2:], axis=3)
        return [tf.reduce_mean(final, axis=[1, 2]), tf.reduce_max(final, axis=[1, 2])]
    if layout in ("pooled_mean_max", "block_mean_max"):
        return [f(m, axis=[1, 2]) for m in maps for f in (tf.reduce_mean, tf.reduce_max)]
    raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")


def head_inputs(block_maps: list[tf.Tensor], logits: tf.Tensor, layout: str = DEFAULT_LAYOUT) -> tf.Tensor:
    """Each block's output (N, H, W, C) and the (N, classes) raw logits -> the head's (N, inputs) inputs."""
    parts = pooled_parts([tf.cast(m, tf.float32) for m in handed_on(block_maps, layout)], layout)
    return tf.concat([*parts, logits], axis=1)


def last_mean_at(block_channels: list[int], layout: str) -> int:
    """Where the last block's means start among the pooled inputs of ``layout`` (before the logits)."""
    if layout == "pooled_max":
        return sum(block_channels)
    if layout == "final_mean_max":
        return block_channels[-2]
    return 2 * sum(block_channels[:-1])


def input_width(block_channels: list[int], classes: int, layout: str = DEFAULT_LAYOUT) -> int:
    if layout == "pooled_max":
        return sum(block_channels) + block_channels[-1] + classes
    if layout == "final_mean_max":
        if len(block_channels) < 2:
            raise ValueError("the final_mean_max layout needs a network of at least two blocks")
        return 2 * sum(block_channels[-2:]) + classes
    return 2 * sum(block_channels) + classes


def energy_score(logits: tf.Tensor) -> tf.Tensor:
    """Negative free energy of the raw logits: (N,)."""
    return tf.reduce_logsumexp(logits, axis=1)


class DomainHead(tf.Module):
    """Standardise the inputs, one hidden ReLU layer, one output: the log-odds of "in the domain"."""

    def __init__(self, inputs: int, hidden: int = DEFAULT_HIDDEN, seed: int = 0, name: str = "domain_head"):
        super().__init__(name=name)
        self.mean = tf.Variable(tf.zeros([inputs]), trainable=False, name="mean")
        self.inv_std = tf.Variable(tf.ones([inputs]), trainable=False, name="inv_std")
        self.w1 = tf.Variable(
            tf.random.stateless_normal([inputs, hidden], seed=[seed, 1], stddev=math.sqrt(2.0 / inputs)), name="w1"
        )
        self.b1 = tf.Variable(tf.zeros([hidden]), name="b1")
        self.w2 = tf.Variable(
            tf.random.stateless_normal([hidden, 1], seed=[seed, 2], stddev=math.sqrt(1.0 / hidden)), name="w2"
        )
        self.b2 = tf.Variable(tf.zeros([1]), name="b2")

    @property
    def trainables(self) -> list[tf.Variable]:
        return [self.w1, self.b1, self.w2, self.b2]

    def variables_in_order(self) -> tuple[tf.Variable, ...]:
        """The weights in ``score_with``'s order."""
        return (self.mean, self.inv_std, self.w1, self.b1, self.w2, self.b2)

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """(N, inputs) -> (N,) scores; differentiable in the trainable variables."""
        return score_with(self.variables_in_order(), inputs)


def fold_head(head: DomainHead) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(w1, b1, w2, b2) as arrays, the standardisation folded into the first layer: the same scores
    with fewer ops in the inference graph, where each op costs more than its arithmetic."""
    mean, inv_std, w1, b1, w2, b2 = (v.numpy().astype(np.float64) for v in head.variables_in_order())
    w1_folded = inv_std[:, None] * w1
    b1_folded = b1 - (mean * inv_std) @ w1
    return tuple(a.astype(np.float32) for a in (w1_folded, b1_folded, w2, b2))  # type: ignore[return-value]


def score_with(weights: tuple[Any, ...], inputs: tf.Tensor) -> tf.Tensor:
    """The head's maths on given weights (variables while training, constants when folded): (N,)."""
    mean, inv_std, w1, b1, w2, b2 = weights
    hidden = tf.nn.relu(tf.matmul((inputs - mean) * inv_std, w1) + b1)
    return tf.squeeze(tf.matmul(hidden, w2) + b2, axis=1)


def new_head(network: Any, hidden: int = DEFAULT_HIDDEN, seed: int = 0, layout: str = DEFAULT_LAYOUT) -> DomainHead:
    """A head sized for ``network`` (a ``DigitNet``): its blocks' channels and its classes."""
    channels = [b[-1] for b in network.spec.blocks]
    return DomainHead(input_width(channels, network.spec.num_classes, layout), hidden, seed)
