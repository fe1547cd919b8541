"""Run a small inference function in the caller's thread, for low latency on one or a few images.

TensorFlow's eager runtime hands every function call to its thread pools. For this network that
hand-off costs more than the maths once the pool threads have gone to sleep, which is the normal case
in a service (measured on 2 cores: 0.70 ms per single-image call after 1 ms of other work, against
0.13 ms when the same graph runs in the caller's thread through a callable handle). ``InlineRunner`` runs the graph of a
``tf.function`` whose weights are constants in a ``tf.compat.v1.Session`` that executes every op in
the calling thread (``RunOptions.inter_op_thread_pool = -1``) on a one-thread device, with
TensorFlow's single-threaded executor where the graph allows it (``SINGLE_THREADED``). Large batches
are still better spread over all cores, so the recognizer uses this only for small ones.

The session's one-thread device needs its own thread pool rather than TensorFlow's process-wide one,
which ``TF_OVERRIDE_GLOBAL_THREADPOOL`` allows; TensorFlow reads it when it creates its first device,
so importing this module sets it (unless the caller already did). If TensorFlow had already run an op,
the session shares the process-wide pool: results are the same, only slower.
"""

from __future__ import annotations

import atexit
import importlib
import os
import weakref

os.environ.setdefault("TF_OVERRIDE_GLOBAL_THREADPOOL", "1")

from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from digitrec.runtime.tf_loader import tf  # noqa: E402

# TensorFlow's own submodules only after digitrec's quiet import of it (see tf_loader)
config_pb2 = importlib.import_module("tensorflow.core.protobuf.config_pb2")

INLINE_MAX_ROWS = 32  # measured: inline is faster up to 16-32 images, all cores win from 64 on
# TensorFlow's executor for small graphs of synchronous kernels: it runs the ops one after another in
# a fixed order, without the default executor's per-op scheduling (a one-image call of the digits
# network with its refusal head: 213 -> 197 us in a loop, 391 -> 357 us right after preprocessing).
SINGLE_THREADED = "SINGLE_THREADED_EXECUTOR"


class InlineRunner:
    """``runner(x)`` = ``concrete(x)`` as numpy, executed in the calling thread. Thread-safe."""

    def __init__(self, concrete: tf.types.experimental.ConcreteFunction) -> None:
        if concrete.captured_inputs:
            raise ValueError("only functions whose weights are constants (no captured variables) can run inline")
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(concrete.graph.as_graph_def(), name="")
        feed, fetch = concrete.inputs[0].name, concrete.outputs[0].name
        options = config_pb2.RunOptions(inter_op_thread_pool=-1)  # -1: the caller's thread
        for executor in (SINGLE_THREADED, ""):
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
            config.experimental.executor_type = executor
            self._session = tf.compat.v1.Session(graph=graph, config=config)
            try:
                self._run = _callable_handle(self._session, feed, fetch, options) or _session_run(
                    self._session, feed, fetch, options
                )
                break
            except tf.errors.OpError:  # a graph that executor cannot run (control flow, asynchronous ops)
                self._session.close()
        self.executor = executor or "default"
        _LIVE.add(self)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``x``: float32 (N, 784)."""
        return self._run(x)

    def release(self) -> None:
        """Free the TensorFlow handle now (it is freed when the runner is collected otherwise)."""
        self._run = _released


def _released(x: np.ndarray) -> np.ndarray:
    raise RuntimeError("this inline runner was released (the interpreter is shutting down)")


_LIVE: weakref.WeakSet[InlineRunner] = weakref.WeakSet()


@atexit.register
def _release_live_runners() -> None:
    """Runners still alive at exit free their handles while TensorFlow's modules still exist; left to
    module teardown, each handle's finaliser would print an ignored AttributeError."""
    for runner in list(_LIVE):
        runner.release()


def _callable_handle(
    session: tf.compat.v1.Session, feed: str, fetch: str, options: config_pb2.RunOptions
) -> Callable[[np.ndarray], np.ndarray] | None:
    """A TensorFlow callable handle (``TF_SessionMakeCallable``): 0.11 ms per single-image call against
    0.25 ms through ``Session.run``'s feed handling. The session method is private (Keras 2's backend
    used it), so None when a TensorFlow version lacks it."""
    make = getattr(session, "_make_callable_from_options", None)
    if make is None:
        return None
    handle = make(config_pb2.CallableOptions(feed=[feed], fetch=[fetch], run_options=options))
    return lambda x: handle(x)[0]


def _session_run(
    session: tf.compat.v1.Session, feed: str, fetch: str, options: config_pb2.RunOptions
) -> Callable[[np.ndarray], np.ndarray]:
    """The public route: ``Session.run`` with the same run options."""
    graph = session.graph
    feed_tensor, fetch_tensor = graph.get_tensor_by_name(feed), graph.get_tensor_by_name(fetch)
    return lambda x: session.run(fetch_tensor, feed_dict={feed_tensor: x}, options=options)


def inline_runner(concrete: tf.types.experimental.ConcreteFunction) -> InlineRunner | None:
    """An ``InlineRunner`` for ``concrete``, or None when it cannot run inline (captured variables)."""
    return InlineRunner(concrete) if not concrete.captured_inputs else None
