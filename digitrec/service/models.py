"""The models the service answers with: loaded once, warmed up, each behind its own micro-batcher.

Cold start is dominated by importing TensorFlow and tracing the first model call, so each model runs one
dummy batch at load time. Models named in ``lazy`` load in a background thread: the server answers
digits (and probes) while the clothing model is still loading; a request for it waits until it is ready.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.service.batcher import DirectPredictor, MicroBatcher

log = logging.getLogger(__name__)

LOAD_WAIT_SECONDS = 60.0


class ModelUnavailableError(RuntimeError):
    """The model is unknown, failed to load, or is still loading after the wait."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} is not available: {reason}")
        self.name = name
        self.reason = reason


@dataclasses.dataclass
class LoadedModel:
    """A recognizer plus the batcher that feeds it."""

    name: str
    recognizer: Any
    batcher: MicroBatcher | DirectPredictor
    load_seconds: float

    @property
    def version(self) -> str:
        return str(getattr(self.recognizer, "version", ""))

    @property
    def class_names(self) -> list[str]:
        return list(self.recognizer.class_names)


def load_recognizer(name: str, models_dir: Path | None) -> Any:
    """Import TensorFlow only here, so building the app config stays cheap."""
    from digitrec.recognizer import DigitRecognizer

    return DigitRecognizer.load(name, models_dir=models_dir)


def warm_up(recognizer: Any, batch_sizes: Iterable[int]) -> None:
    """Run dummy batches so the first real request does not pay for graph tracing."""
    for size in batch_sizes:
        recognizer.predict_proba(np.zeros((size, 784), dtype=np.float32))


class ModelRegistry:
    """Loads the configured models and hands out ``LoadedModel`` by name."""

    def __init__(
        self,
        names: Iterable[str],
        *,
        models_dir: Path | None,
        batch_size: int,
        batch_wait_ms: float,
        lazy: Iterable[str] = (),
        on_batch: Callable[[str], Callable[[int], None]] | None = None,
        on_loaded: Callable[[str], None] | None = None,
        preloaded: dict[str, Any] | None = None,
        loader: Callable[[str, Path | None], Any] = load_recognizer,
    ) -> None:
        self.names = tuple(names)
        self.models_dir = models_dir
        self.batch_size = batch_size
        self.batch_wait_ms = batch_wait_ms
        self.lazy = tuple(n for n in lazy if n in self.names)
        self._on_batch = on_batch
        self._on_loaded = on_loaded
        self._preloaded = dict(preloaded or {})
        self._loader = loader
        self._models: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {}
        self._events = {name: threading.Event() for name in self.names}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Load eager models now (errors propagate: the service cannot start without them)."""
        for name in self.names:
            if name in self.lazy:
                thread = threading.Thread(target=self._load_quietly, args=(name,), name=f"load-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)
            else:
                self._load(name)

    def _load_quietly(self, name: str) -> None:
        try:
            self._load(name)
        except Exception as exc:  # a lazy model failing must not kill the server; readyz reports it
            log.exception("loading model %s failed", name)
            with self._lock:
                self._errors[name] = f"{type(exc).__name__}: {exc}"
            self._events[name].set()

    def _load(self, name: str) -> None:
        started = time.perf_counter()
        recognizer = self._preloaded.get(name) or self._loader(name, self.models_dir)
        observer = self._on_batch(name) if self._on_batch else None
        if self.batch_size > 1:
            batcher: MicroBatcher | DirectPredictor = MicroBatcher(
                recognizer.predict_proba,
                max_batch=self.batch_size,
                max_wait_ms=self.batch_wait_ms,
                name=name,
                on_batch=observer,
            )
        else:
            batcher = DirectPredictor(recognizer.predict_proba, on_batch=observer)
        if name not in self._preloaded:
            warm_up(recognizer, sorted({1, self.batch_size}))
        loaded = LoadedModel(name, recognizer, batcher, time.perf_counter() - started)
        with self._lock:
            self._models[name] = loaded
        self._events[name].set()
        if self._on_loaded:
            self._on_loaded(name)
        log.info("model %s %s ready in %.2f s", name, loaded.version, loaded.load_seconds)

    def get(self, name: str, wait: float = LOAD_WAIT_SECONDS) -> LoadedModel:
        if name not in self._events:
            raise ModelUnavailableError(name, f"unknown model; choose one of {', '.join(self.names)}")
        if not self._events[name].wait(wait):
            raise ModelUnavailableError(name, "still loading")
        with self._lock:
            if name in self._models:
                return self._models[name]
            raise ModelUnavailableError(name, self._errors.get(name, "failed to load"))

    def state(self, name: str) -> str:
        with self._lock:
            if name in self._models:
                return "loaded"
            if name in self._errors:
                return "failed"
        return "loading"

    def status(self) -> dict[str, str]:
        return {name: self.state(name) for name in self.names}

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return [self._models[n] for n in self.names if n in self._models]

    def ready(self) -> bool:
        """Ready when every eager model is loaded (a lazy one may still be loading)."""
        status = self.status()
        return all(status[n] == "loaded" for n in self.names if n not in self.lazy)

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new predictions, and wait (at most ``timeout`` s) for models still loading, so no
        thread is inside TensorFlow when the interpreter shuts down (that aborts the process)."""
        for model in self.loaded():
            model.batcher.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
