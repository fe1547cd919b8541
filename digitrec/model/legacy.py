"""The classic TensorFlow "deep MNIST" tutorial network, for checkpoints saved with TF1's ``Saver``.

Seed projects saved ``deepCNN.ckpt`` from graphs that created plain ``tf.Variable``s under the name
scopes ``conv1``, ``conv2``, ``fc1`` and ``fc2`` (so the names are ``conv1/Variable`` for the weights
and ``conv1/Variable_1`` for the biases). This module reads those tensors by name and runs the same
maths as the tutorial graph with dropout off.
"""

from __future__ import annotations

from digitrec.errors import CheckpointError
from digitrec.model.domain import energy_score
from digitrec.runtime.tf_loader import tf

LAYERS = {
    "conv1": ([5, 5, 1, 32], [32]),
    "conv2": ([5, 5, 32, 64], [64]),
    "fc1": ([7 * 7 * 64, 1024], [1024]),
    "fc2": ([1024, 10], [10]),
}


def is_legacy_checkpoint(prefix: str) -> bool:
    try:
        names = {name for name, _ in tf.train.list_variables(prefix)}
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError):
        return False
    return {"conv1/Variable", "fc2/Variable_1"} <= names


class LegacyDeepMnist(tf.Module):
    """input (N,784) -> 28x28x1 -> conv5x5x32+ReLU -> pool -> conv5x5x64+ReLU -> pool -> fc1024+ReLU -> fc10."""

    def __init__(self, prefix: str):
        super().__init__(name="legacy_deep_mnist")
        try:
            reader = tf.train.load_checkpoint(prefix)
        except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError) as exc:
            raise CheckpointError(f"cannot read TF1 checkpoint {prefix}: {exc}") from None
        self.params: dict[str, tuple[tf.Variable, tf.Variable]] = {}
        for scope, (w_shape, b_shape) in LAYERS.items():
            pair = []
            for suffix, shape in (("Variable", w_shape), ("Variable_1", b_shape)):
                name = f"{scope}/{suffix}"
                if not reader.has_tensor(name):
                    raise CheckpointError(f"{prefix}: missing variable {name} of the deep-MNIST network")
                value = reader.get_tensor(name)
                if list(value.shape) != shape:
                    raise CheckpointError(f"{prefix}: {name} has shape {list(value.shape)}, expected {shape}")
                pair.append(tf.Variable(value, trainable=False, name=name.replace("/", "_")))
            self.params[scope] = (pair[0], pair[1])

    def logits(self, x: tf.Tensor) -> tf.Tensor:
        h = tf.reshape(x, [-1, 28, 28, 1])
        for scope in ("conv1", "conv2"):
            w, b = self.params[scope]
            h = tf.nn.relu(tf.nn.conv2d(h, w, strides=1, padding="SAME") + b)
            h = tf.nn.max_pool2d(h, ksize=2, strides=2, padding="SAME")
        h = tf.reshape(h, [-1, 7 * 7 * 64])
        w, b = self.params["fc1"]
        h = tf.nn.relu(tf.matmul(h, w) + b)
        w, b = self.params["fc2"]
        return tf.matmul(h, w) + b

    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """(N, 11): the probabilities, then the energy domain score (no refusal head; see ``domain``)."""
        logits = self.logits(x)
        return tf.concat([tf.nn.softmax(logits), energy_score(logits)[:, None]], axis=1)
