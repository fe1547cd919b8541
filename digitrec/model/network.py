"""The digit/clothing network as a plain ``tf.Module``: variables plus ``tf.nn`` ops, no Keras.

A small VGG-style CNN: blocks of 3x3 convolutions with batch normalisation and ReLU, max-pooling
between blocks, global average pooling and one dense layer. The whole architecture is described by a
JSON-friendly dict (``NetworkSpec``) that is stored in ``model.json``, so a checkpoint can always be
rebuilt without code changes.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from digitrec.model.domain import (
    DEFAULT_LAYOUT,
    DomainHead,
    energy_score,
    fold_head,
    head_inputs,
    last_mean_at,
    pooled_parts,
)
from digitrec.runtime.tf_loader import tf

INPUT_SIZE = 28
INPUT_DIM = INPUT_SIZE * INPUT_SIZE
ARCHITECTURE = "digitrec-cnn"


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """Blocks of convolution widths; each block ends with a 2x2 max-pool except the last."""

    blocks: tuple[tuple[int, ...], ...] = ((32, 32), (64, 64), (128,))
    num_classes: int = 10
    dropout: float = 0.3
    batch_norm_momentum: float = 0.99
    head: str = "gap"  # "gap": global average pooling; "flatten": keep where features are (clothing)

    def to_json(self) -> dict[str, Any]:
        return {
            "blocks": [list(b) for b in self.blocks],
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "batch_norm_momentum": self.batch_norm_momentum,
            "head": self.head,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NetworkSpec:
        return cls(
            blocks=tuple(tuple(int(w) for w in b) for b in data["blocks"]),
            num_classes=int(data["num_classes"]),
            dropout=float(data["dropout"]),
            batch_norm_momentum=float(data.get("batch_norm_momentum", 0.99)),
            head=str(data.get("head", "gap")),
        )

    def multiply_adds(self) -> int:
        """Multiply-adds of one forward pass (for the model card and benchmark notes)."""
        total, size, channels = 0, INPUT_SIZE, 1
        for i, block in enumerate(self.blocks):
            for width in block:
                total += size * size * 9 * channels * width
                channels = width
            if i < len(self.blocks) - 1:
                size //= 2
        return total + self.head_features() * self.num_classes

    def final_size(self) -> int:
        return INPUT_SIZE // 2 ** (len(self.blocks) - 1)

    def head_features(self) -> int:
        """Inputs of the dense layer: channels (GAP) or channels x final height x width (flatten)."""
        channels = self.blocks[-1][-1]
        return channels if self.head == "gap" else channels * self.final_size() ** 2


def pool_features(h: tf.Tensor, spec: NetworkSpec) -> tf.Tensor:
    """The last feature map (N, H, W, C) -> the dense layer's input (N, features)."""
    if spec.head == "gap":
        return tf.reduce_mean(h, axis=[1, 2])
    return tf.reshape(h, [-1, spec.head_features()])


class ConvBN(tf.Module):
    """3x3 SAME convolution (no bias) + batch norm + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, momentum: float, seed: int, name: str):
        super().__init__(name=name)
        fan_in = 9 * in_channels
        init = tf.random.stateless_normal(
            [3, 3, in_channels, out_channels], seed=[seed, 1], stddev=math.sqrt(2.0 / fan_in)
        )
        self.kernel = tf.Variable(init, name="kernel")
        self.gamma = tf.Variable(tf.ones([out_channels]), name="gamma")
        self.beta = tf.Variable(tf.zeros([out_channels]), name="beta")
        self.moving_mean = tf.Variable(tf.zeros([out_channels]), trainable=False, name="moving_mean")
        self.moving_variance = tf.Variable(tf.ones([out_channels]), trainable=False, name="moving_variance")
        self.momentum = momentum

    def __call__(self, x: tf.Tensor, training: bool = False, momentum: tf.Tensor | None = None) -> tf.Tensor:
        y = tf.nn.conv2d(x, self.kernel, strides=1, padding="SAME")
        if training:
            mean, variance = tf.nn.moments(y, axes=[0, 1, 2])
            m = self.momentum if momentum is None else momentum
            self.moving_mean.assign(m * self.moving_mean + (1.0 - m) * mean)
            self.moving_variance.assign(m * self.moving_variance + (1.0 - m) * variance)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        y = tf.nn.batch_normalization(y, mean, variance, self.beta, self.gamma, variance_epsilon=1e-3)
        return tf.nn.relu(y)


class DigitNet(tf.Module):
    """Maps (N, 784) float32 in [0, 1] (white digit on black) to (N, num_classes) logits."""

    def __init__(self, spec: NetworkSpec = NetworkSpec(), seed: int = 0, name: str = "digit_net"):
        super().__init__(name=name)
        self.spec = spec
        self.layers: list[list[ConvBN]] = []
        channels, layer_seed = 1, seed * 1000
        for b, block in enumerate(spec.blocks):
            convs = []
            for c, width in enumerate(block):
                layer_seed += 1
                convs.append(ConvBN(channels, width, spec.batch_norm_momentum, layer_seed, f"conv{b + 1}_{c + 1}"))
                channels = width
            self.layers.append(convs)
        if spec.head not in ("gap", "flatten"):
            raise ValueError(f"head must be 'gap' or 'flatten', not {spec.head!r}")
        features = spec.head_features()
        limit = math.sqrt(6.0 / (features + spec.num_classes))
        self.dense_w = tf.Variable(
            tf.random.stateless_uniform([features, spec.num_classes], seed=[seed, 2], minval=-limit, maxval=limit),
            name="dense_w",
        )
        self.dense_b = tf.Variable(tf.zeros([spec.num_classes]), name="dense_b")

    def logits(
        self,
        x: tf.Tensor,
        training: bool = False,
        dropout_seed: tf.Tensor | None = None,
        bn_momentum: tf.Tensor | None = None,
    ) -> tf.Tensor:
        """Logits; in training, ``bn_momentum`` can start low so short runs get usable statistics."""
        h = pool_features(self.block_outputs(x, training, bn_momentum)[-1], self.spec)
        if training and self.spec.dropout > 0:
            h = tf.nn.experimental.stateless_dropout(h, rate=self.spec.dropout, seed=dropout_seed)
        return tf.matmul(h, self.dense_w) + self.dense_b

    def block_outputs(
        self, x: tf.Tensor, training: bool = False, bn_momentum: tf.Tensor | None = None
    ) -> list[tf.Tensor]:
        """Each convolution block's output (N, H, W, C), before its max-pool; the last feeds the dense layer."""
        h = tf.reshape(x, [-1, INPUT_SIZE, INPUT_SIZE, 1])
        outputs = []
        for b, convs in enumerate(self.layers):
            if b:
                h = tf.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
            for conv in convs:
                h = conv(h, training=training, momentum=bn_momentum)
            outputs.append(h)
        return outputs

    def domain_inputs(self, x: tf.Tensor, layout: str = DEFAULT_LAYOUT) -> tf.Tensor:
        """What the refusal head reads (see ``domain.head_inputs``), in inference mode."""
        maps = self.block_outputs(x)
        logits = tf.matmul(pool_features(maps[-1], self.spec), self.dense_w) + self.dense_b
        return head_inputs(maps, logits, layout)

    @tf.function(input_signature=[tf.TensorSpec([None, INPUT_DIM], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Inference: class probabilities for a batch of flattened 28x28 images."""
        return tf.nn.softmax(self.logits(x, training=False))


PRECISIONS = ("auto", "float32", "bfloat16")
PRECISION_ENV_VAR = "DIGITREC_PRECISION"


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def resolve_precision(precision: str | None = None) -> str:
    """``float32`` or ``bfloat16`` for inference.

    ``auto`` (the default, or ``$DIGITREC_PRECISION``) picks bfloat16 only on CPUs with AMX bfloat16
    matrix units, where oneDNN runs the convolutions about five times faster; elsewhere bfloat16 would
    be emulated and slower, so float32 is used.
    """
    choice = (precision or os.environ.get(PRECISION_ENV_VAR) or "auto").strip().lower()
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {choice!r}")
    if choice == "auto":
        return "bfloat16" if "amx_bf16" in cpu_flags() else "float32"
    return choice


class FoldedNet(tf.Module):
    """Inference-only copy of a ``DigitNet``: batch norm folded in, weights frozen as graph constants.

    kernel' = kernel * gamma / sqrt(var + eps) and bias = beta - mean * gamma / sqrt(var + eps) give the
    same outputs, and conv + bias + ReLU is one fused oneDNN kernel on CPU. The weights are embedded as
    constants rather than captured variables so oneDNN can keep its reordered filters between calls.
    With ``precision="bfloat16"`` the convolutions run in bfloat16 (the dense head stays float32).
    ``temperature`` (from model.json's calibration, see ``digitrec.model.calibration``) divides the logits
    before the softmax: the ranking, hence the label, is unchanged; only the confidence is calibrated.

    The output is (N, classes + 1): the probabilities, then the domain score (see ``domain``) of the
    same call, from the refusal ``head`` when there is one, else the energy of the raw logits. The
    head's few weights are constants of the same graph, so refusal costs no second model call.

    In a one-image call every op has a fixed cost (a oneDNN matrix product about as much as a small
    convolution), so a head on pooled inputs is folded into the classifier's own dense layer where it
    can be: with global average pooling the classifier's features are the last block's means, which
    are among the head's inputs, and the logits are linear in them. One matrix product of the pooled
    inputs then gives the logits and the head's hidden layer together (the head's weights on the
    logits folded into its weights on those means), and its output layer is a multiply and a sum.
    """

    def __init__(
        self,
        net: DigitNet,
        precision: str = "float32",
        name: str = "folded_digit_net",
        temperature: float = 1.0,
        head: DomainHead | None = None,
        layout: str = DEFAULT_LAYOUT,
    ):
        super().__init__(name=name)
        if precision not in PRECISIONS[1:]:
            raise ValueError(f"precision must be float32 or bfloat16, not {precision!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, not {temperature!r}")
        self.precision = precision
        self.temperature = float(temperature)
        self._blocks: list[list[tuple[Any, Any]]] = []
        for convs in net.layers:
            folded = []
            for conv in convs:
                scale = conv.gamma / tf.sqrt(conv.moving_variance + 1e-3)
                folded.append(((conv.kernel * scale).numpy(), (conv.beta - conv.moving_mean * scale).numpy()))
            self._blocks.append(folded)
        self._dense_w, self._dense_b = net.dense_w.numpy(), net.dense_b.numpy()
        self._head = None if head is None else fold_head(head)
        self._layout = layout
        self.spec = net.spec
        self._joint = None  # the dense layer and the head's first layer as one product, when they fold
        if self._head is not None and layout != "block_mean_max" and net.spec.head == "gap":
            joint_w, joint_b = joint_layer(self._dense_w, self._dense_b, self._head, net.spec, layout)
            classes = net.spec.num_classes  # the temperature divides the logits' columns: one op fewer
            joint_w[:, :classes] /= self.temperature
            joint_b[:classes] /= self.temperature
            self._joint = (joint_w, joint_b)

    @tf.function(input_signature=[tf.TensorSpec([None, INPUT_DIM], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        dtype = tf.as_dtype(self.precision)
        h = tf.cast(tf.reshape(x, [-1, INPUT_SIZE, INPUT_SIZE, 1]), dtype)
        block_outputs, handed_on = [], []  # handed_on: the maps a pooled layout reads (see domain)
        for b, convs in enumerate(self._blocks):
            if b:
                h = tf.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
                handed_on.append(h)
            for kernel, bias in convs:
                h = tf.nn.conv2d(h, tf.constant(kernel, dtype), strides=1, padding="SAME")
                h = tf.nn.relu(tf.nn.bias_add(h, tf.constant(bias, dtype)))
            block_outputs.append(h)
        classes = self.spec.num_classes
        if self._joint is not None:  # reduced in the network's dtype, then one cast
            pooled = tf.cast(tf.concat(pooled_parts([*handed_on, h], self._layout), axis=1), tf.float32)
            joint_w, joint_b = self._joint
            both = tf.nn.bias_add(tf.matmul(pooled, tf.constant(joint_w)), tf.constant(joint_b))
            logits, hidden = tf.split(both, [classes, both.shape[1] - classes], axis=1)  # logits already / T
            hidden = tf.nn.relu(hidden)
        else:
            features = tf.cast(pool_features(h, self.spec), tf.float32)
            logits = tf.matmul(features, tf.constant(self._dense_w)) + tf.constant(self._dense_b)
        if self._head is None:
            score = energy_score(logits)[:, None]
        else:
            w1, b1, w2, b2 = self._head
            if self._joint is None:
                if self._layout != "block_mean_max":
                    pooled = tf.cast(tf.concat(pooled_parts([*handed_on, h], self._layout), axis=1), tf.float32)
                    inputs = tf.concat([pooled, logits], axis=1)
                else:
                    inputs = head_inputs(block_outputs, logits, self._layout)
                hidden = tf.nn.relu(tf.nn.bias_add(tf.matmul(inputs, tf.constant(w1)), tf.constant(b1)))
            score = tf.reduce_sum(hidden * tf.constant(w2[:, 0]), axis=1, keepdims=True) + tf.constant(b2)
        if self.temperature != 1.0 and self._joint is None:
            logits = logits * tf.constant(1.0 / self.temperature, tf.float32)
        return tf.concat([tf.nn.softmax(logits), score], axis=1)


def joint_layer(
    dense_w: np.ndarray, dense_b: np.ndarray, head: tuple[np.ndarray, ...], spec: NetworkSpec, layout: str
) -> tuple[np.ndarray, np.ndarray]:
    """(pooled inputs, classes + hidden) weights and bias giving [logits | the head's first layer before
    its ReLU] from the pooled inputs alone, for a ``gap`` network (see ``FoldedNet``): logits =
    pooled @ D + b with D the dense weights on the last block's mean columns, and the head's first
    layer [pooled, logits] @ W1 + b1 = pooled @ (W1_pooled + D @ W1_logits) + (b1 + b @ W1_logits)."""
    w1, b1 = (np.asarray(a, np.float64) for a in head[:2])
    classes, features = spec.num_classes, spec.head_features()
    width = w1.shape[0] - classes
    at = last_mean_at([b[-1] for b in spec.blocks], layout)
    dense = np.zeros((width, classes))
    dense[at : at + features] = dense_w
    w1_pooled, w1_logits = w1[:width], w1[width:]
    weights = np.concatenate([dense, w1_pooled + dense @ w1_logits], axis=1)
    bias = np.concatenate([dense_b, b1 + np.asarray(dense_b, np.float64) @ w1_logits])
    return weights.astype(np.float32), bias.astype(np.float32)
