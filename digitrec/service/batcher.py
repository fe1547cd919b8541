"""Micro-batching: concurrent requests share one model call.

Each request thread hands its prepared (1, 784) tensor to the batcher and waits on a future. A single
worker thread takes the first waiting item, keeps collecting until it has ``max_batch`` items or
``max_wait_ms`` has passed, runs the model once on the stacked batch and hands each row back.

The wait is adaptive: request threads announce themselves (``incoming()``) while they decode and
preprocess, and the worker waits for more items only while such requests are on their way. A lone
request is run at once (no added latency); under load the batch fills with requests that were
already being prepared.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import numpy as np

log = logging.getLogger(__name__)

ProbaFn = Callable[[np.ndarray], np.ndarray]


class BatcherClosedError(RuntimeError):
    """The batcher was closed; no more predictions are accepted."""


class MicroBatcher:
    """Collect up to ``max_batch`` inputs (or wait ``max_wait_ms``) and run ``predict_proba`` once."""

    def __init__(
        self,
        predict_proba: ProbaFn,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        name: str = "model",
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._predict_proba = predict_proba
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[tuple[np.ndarray, Future] | None] = queue.SimpleQueue()
        self._closed = False
        self._incoming = 0
        self._incoming_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def predict(self, x: np.ndarray, timeout: float | None = 30.0) -> np.ndarray:
        """Probabilities (n, classes) for ``x`` (n, 784); blocks until the shared batch ran."""
        return self.submit(x).result(timeout=timeout)

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Say a request is preparing input for this batcher, so a forming batch waits for it."""
        with self._incoming_lock:
            self._incoming += 1
        try:
            yield
        finally:
            with self._incoming_lock:
                self._incoming -= 1

    def submit(self, x: np.ndarray) -> Future[np.ndarray]:
        if self._closed:
            raise BatcherClosedError("the batcher is closed")
        future: Future[np.ndarray] = Future()
        self._queue.put((np.asarray(x, dtype=np.float32).reshape(-1, 784), future))
        return future

    def close(self) -> None:
        """Stop the worker after the items already queued; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _collect(self, first: tuple[np.ndarray, Future]) -> tuple[list[tuple[np.ndarray, Future]], bool]:
        items = [first]
        rows = len(first[0])
        deadline = time.perf_counter() + self.max_wait
        stop = False
        while rows < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                # Wait only while requests are still preparing input (the ones queued already count
                # as 0 once their submit returned, so a lone request never waits).
                if remaining <= 0 or self._waiting_for() <= 0:
                    break
                try:
                    item = self._queue.get(timeout=min(remaining, 0.0005))
                except queue.Empty:
                    continue
            if item is None:
                stop = True
                break
            items.append(item)
            rows += len(item[0])
        return items, stop

    def _waiting_for(self) -> int:
        """Requests announced with ``incoming()`` whose input is not queued yet."""
        return self._incoming - self._queue.qsize()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, stop = self._collect(first)
            self._run_batch(items)
            if stop:
                return

    def _run_batch(self, items: list[tuple[np.ndarray, Future]]) -> None:
        live = [(x, f) for x, f in items if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            batch = np.concatenate([x for x, _ in live], axis=0)
            proba = np.asarray(self._predict_proba(batch))
        except BaseException as exc:  # hand the failure to every waiting request, keep the worker alive
            log.exception("batched model call failed")
            for _, future in live:
                future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(batch))
        start = 0
        for x, future in live:
            future.set_result(proba[start : start + len(x)])
            start += len(x)


class DirectPredictor:
    """The same interface without batching: each request calls the model itself (for the benchmark)."""

    def __init__(self, predict_proba: ProbaFn, on_batch: Callable[[int], None] | None = None) -> None:
        self._predict_proba = predict_proba
        self._on_batch = on_batch
        self.max_batch = 1

    def predict(self, x: np.ndarray, timeout: float | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1, 784)
        proba = np.asarray(self._predict_proba(x))
        if self._on_batch is not None:
            self._on_batch(len(x))
        return proba

    def submit(self, x: np.ndarray) -> Future[np.ndarray]:
        """Run now, in the calling thread; the future is already done."""
        future: Future[np.ndarray] = Future()
        try:
            future.set_result(self.predict(x))
        except Exception as exc:
            future.set_exception(exc)
        return future

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        yield

    def close(self) -> None:
        pass
