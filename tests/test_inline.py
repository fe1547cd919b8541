"""The in-thread runner for small batches gives the same answers as TensorFlow's eager call."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from digitrec.model import inline
from digitrec.model.inline import INLINE_MAX_ROWS, SINGLE_THREADED, InlineRunner, inline_runner
from digitrec.model.inputs import to_inputs
from digitrec.model.recognizer import DigitRecognizer

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_inline_runner_matches_the_eager_function(mnist_test, precision):
    model = DigitRecognizer.load("digits", precision=precision)
    assert model._inline is not None  # the shipped models run inline
    images, _ = mnist_test
    for n in (1, 7, INLINE_MAX_ROWS):
        x = to_inputs(images[:n])
        eager = model._infer(tf.constant(x)).numpy()
        np.testing.assert_allclose(model._inline(x), eager, atol=1e-6)


def test_the_shipped_models_run_on_the_single_threaded_executor(digits_model, fashion_model):
    """Their graphs are synchronous kernels only, which TensorFlow's single-threaded executor runs with
    less work per op than the default executor (the answers are checked against eager above)."""
    assert digits_model._inline.executor == SINGLE_THREADED
    assert fashion_model._inline.executor == SINGLE_THREADED


def test_without_that_executor_the_runner_uses_the_default_one(digits_model, mnist_test, monkeypatch):
    """A TensorFlow without the single-threaded executor refuses the session's callable; that is
    simulated by asking for an executor that does not exist, since it cannot be caused otherwise."""
    monkeypatch.setattr(inline, "SINGLE_THREADED", "NO_SUCH_EXECUTOR")
    runner = InlineRunner(digits_model._infer)
    assert runner.executor == "default"
    images, _ = mnist_test
    x = to_inputs(images[:3])
    np.testing.assert_allclose(runner(x), digits_model._inline(x), atol=1e-6)


def test_small_and_large_batches_agree(digits_model, mnist_test):
    images, _ = mnist_test
    x = to_inputs(images[: 2 * INLINE_MAX_ROWS + 6])  # one eager call
    halves = np.concatenate([digits_model.predict_proba(part) for part in np.array_split(x, 3)])  # inline
    np.testing.assert_allclose(digits_model.predict_proba(x), halves, atol=1e-6)


def test_inline_runner_is_thread_safe(digits_model, mnist_test):
    images, _ = mnist_test
    inputs = [to_inputs(images[i : i + 1 + i % 5]) for i in range(40)]
    expected = [digits_model._infer(tf.constant(x)).numpy() for x in inputs]
    failures: list[str] = []

    def work(offset: int) -> None:
        for k in range(len(inputs)):
            i = (k + offset) % len(inputs)
            if not np.allclose(digits_model._inline(inputs[i]), expected[i], atol=1e-6):
                failures.append(f"input {i}")

    threads = [threading.Thread(target=work, args=(t * 7,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_public_session_route_gives_the_same_answers(digits_model, mnist_test, monkeypatch):
    """Without TensorFlow's private callable handle (a future version may drop it) the runner uses
    ``Session.run``. The method is removed here because that absence cannot be caused otherwise."""
    defining = next(c for c in tf.compat.v1.Session.__mro__ if "_make_callable_from_options" in vars(c))
    monkeypatch.delattr(defining, "_make_callable_from_options")
    runner = InlineRunner(digits_model._infer)
    assert not hasattr(runner._session, "_make_callable_from_options")  # so Session.run is what runs
    images, _ = mnist_test
    x = to_inputs(images[:5])
    np.testing.assert_allclose(runner(x), digits_model._inline(x), atol=1e-6)


def test_functions_with_variables_stay_eager():
    class WithVariable(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(tf.ones([784, 10]))

        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32)])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return tf.matmul(x, self.w)

    module = WithVariable()  # kept alive: the traced method refers to it weakly
    concrete = module.__call__.get_concrete_function()
    assert inline_runner(concrete) is None
    with pytest.raises(ValueError, match="captured variables"):
        InlineRunner(concrete)


def test_exit_with_a_live_runner_is_quiet(tmp_path):
    """A process that exits with models loaded (here: an app that answered a request) must not print
    TensorFlow finaliser errors; without the exit hook it printed one per model."""
    # Importing multiprocessing (as many programs do) changes the order of interpreter teardown so that
    # TensorFlow's modules are gone before the handles are collected.
    script = f"""
import multiprocessing
import cv2, numpy as np
from pathlib import Path
from werkzeug.test import Client
from digitrec.service.app import create_app
from digitrec.service.config import ServiceConfig
app = create_app(ServiceConfig.from_env({{}}, data_dir=Path({str(tmp_path)!r})), wait_for_models=True)
image = np.full((64, 64), 255, np.uint8)
cv2.line(image, (32, 10), (32, 54), 0, 5)
png = cv2.imencode(".png", image)[1].tobytes()
client = Client(app)
print(client.post("/api/v1/predict", data=png, content_type="image/png").status_code)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env = {k: v for k, v in env.items() if not k.startswith("CASSANDRA_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "200"
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
