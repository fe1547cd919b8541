"""A TF1 `Saver` checkpoint of the classic deep-MNIST tutorial graph loads and gives the same logits."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from digitrec.errors import CheckpointError, ModelNotFoundError
from digitrec.model.recognizer import DigitRecognizer


def _save_tutorial_checkpoint(directory, x_value: np.ndarray) -> np.ndarray:
    """Build the tutorial graph exactly as the seeds did (plain tf.Variable under name scopes), save it
    with tf.compat.v1.train.Saver, and return its logits for ``x_value`` (dropout keep_prob = 1)."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(42)
        x = v1.placeholder(tf.float32, [None, 784])
        keep_prob = v1.placeholder(tf.float32)

        def weight(shape):
            return v1.Variable(v1.truncated_normal(shape, stddev=0.1))

        def bias(shape):
            return v1.Variable(v1.constant(0.1, shape=shape) + v1.random_uniform(shape, 0, 0.05))

        def conv(h, w):
            return tf.nn.conv2d(h, w, strides=[1, 1, 1, 1], padding="SAME")

        def pool(h):
            return tf.nn.max_pool2d(h, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")

        image = tf.reshape(x, [-1, 28, 28, 1])
        with v1.name_scope("conv1"):
            w1, b1 = weight([5, 5, 1, 32]), bias([32])
            h = pool(tf.nn.relu(conv(image, w1) + b1))
        with v1.name_scope("conv2"):
            w2, b2 = weight([5, 5, 32, 64]), bias([64])
            h = pool(tf.nn.relu(conv(h, w2) + b2))
        with v1.name_scope("fc1"):
            w3, b3 = weight([7 * 7 * 64, 1024]), bias([1024])
            h = tf.nn.relu(tf.matmul(tf.reshape(h, [-1, 7 * 7 * 64]), w3) + b3)
            h = tf.nn.dropout(h, rate=1 - keep_prob)
        with v1.name_scope("fc2"):
            w4, b4 = weight([1024, 10]), bias([10])
            logits = tf.matmul(h, w4) + b4
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            saver.save(sess, str(directory / "deepCNN.ckpt"))
            return sess.run(logits, {x: x_value, keep_prob: 1.0})


@pytest.fixture(scope="module")
def legacy(tmp_path_factory):
    directory = tmp_path_factory.mktemp("legacy")
    x = np.random.default_rng(0).random((16, 784), dtype=np.float32)
    logits = _save_tutorial_checkpoint(directory, x)
    return directory, x, logits


def test_variable_names_are_the_seed_names(legacy):
    directory, _, _ = legacy
    names = {name for name, _ in tf.train.list_variables(str(directory / "deepCNN.ckpt"))}
    assert {"conv1/Variable", "conv1/Variable_1", "fc2/Variable", "fc2/Variable_1"} <= names


def test_same_logits_as_the_tf1_graph(legacy):
    directory, x, expected_logits = legacy
    recognizer = DigitRecognizer()
    assert recognizer.Load_Model(directory, "deepCNN.ckpt") is recognizer
    logits = recognizer._network.logits(tf.constant(x)).numpy()
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-4, atol=1e-4)
    expected_proba = tf.nn.softmax(expected_logits).numpy()
    np.testing.assert_allclose(recognizer.predict_proba(x), expected_proba, rtol=1e-4, atol=1e-5)
    assert recognizer.Predict_Label(x[:1]) == int(np.argmax(expected_logits[0]))
    assert recognizer.name == "legacy-deep-mnist" and recognizer.class_names[3] == "3"


def test_missing_and_wrong_checkpoints(tmp_path, legacy):
    with pytest.raises(ModelNotFoundError, match="no checkpoint"):
        DigitRecognizer().Load_Model(tmp_path, "deepCNN.ckpt")
    # A checkpoint of some other graph is not mistaken for the tutorial network.
    other = tf.train.Checkpoint(v=tf.Variable(tf.zeros([3])))
    prefix = other.write(str(tmp_path / "other.ckpt"))
    with pytest.raises(ModelNotFoundError):
        DigitRecognizer().Load_Model(tmp_path, "other.ckpt")
    assert prefix.endswith("other.ckpt")


def test_wrong_shapes_are_named(tmp_path):
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        for scope, shapes in {
            "conv1": ([5, 5, 1, 16], [16]),  # wrong width
            "conv2": ([5, 5, 32, 64], [64]),
            "fc1": ([3136, 1024], [1024]),
            "fc2": ([1024, 10], [10]),
        }.items():
            with v1.name_scope(scope):
                v1.Variable(v1.zeros(shapes[0]))
                v1.Variable(v1.zeros(shapes[1]))
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver().save(sess, str(tmp_path / "bad.ckpt"))
    with pytest.raises(CheckpointError, match="conv1/Variable has shape"):
        DigitRecognizer().Load_Model(tmp_path, "bad.ckpt")
