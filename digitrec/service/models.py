"""The models the service answers with: loaded once, warmed up, each behind its own micro-batcher.

Cold start is dominated by importing TensorFlow and tracing the first model call, so each model runs one
dummy batch at load time. Models named in ``lazy`` load in a background thread: the server answers
digits (and probes) while the clothing model is still loading; a request for it waits until it is ready.

Hot swap: each model serves its promoted version (``digitrec.model.versions``). ``reload`` (called by the
poller every ``poll_seconds`` and by ``POST /api/v1/models/<name>/reload``) loads and warms a newly
promoted version beside the old one, then switches under the lock; a request holds the version it
started with (``acquire``: a reference count), and the old version's batcher is closed when the last
request using it is done. A version asked for by id is loaded on demand and kept in a small cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from digitrec.model import versions
from digitrec.service.batcher import DirectPredictor, MicroBatcher

log = logging.getLogger(__name__)

LOAD_WAIT_SECONDS = 60.0
EXTRA_VERSIONS = 2  # non-serving versions kept loaded for requests that name them


class ModelUnavailableError(RuntimeError):
    """The model is unknown, failed to load, or is still loading after the wait."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model {name!r} is not available: {reason}")
        self.name = name
        self.reason = reason


@dataclasses.dataclass(eq=False)
class LoadedModel:
    """A recognizer plus the batcher that feeds it, and how many requests are using it right now."""

    name: str
    recognizer: Any
    batcher: MicroBatcher | DirectPredictor
    load_seconds: float
    path: Path | None = None
    loaded_at: float = dataclasses.field(default_factory=time.time)
    in_flight: int = 0  # guarded by the registry's lock
    retired: bool = False  # no new requests; the batcher closes when ``in_flight`` reaches 0

    @property
    def version(self) -> str:
        return str(getattr(self.recognizer, "version", ""))

    @property
    def class_names(self) -> list[str]:
        return list(self.recognizer.class_names)


def load_recognizer(name: str, model_dir: Path) -> Any:
    """Import TensorFlow only here, so building the app config stays cheap."""
    from digitrec.model.recognizer import DigitRecognizer

    return DigitRecognizer.load(model_dir)


def warm_up(recognizer: Any, batch_sizes: Iterable[int]) -> None:
    """Run dummy batches so the first real request does not pay for graph tracing."""
    for size in batch_sizes:
        recognizer.predict_scores(np.zeros((size, 784), dtype=np.float32))


class ModelRegistry:
    """Loads the configured models, hands out ``LoadedModel`` by name (and version), swaps versions."""

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
        loader: Callable[[str, Path], Any] = load_recognizer,
        poll_seconds: float = 0.0,
        on_serving: Callable[[str, str | None, str | None], None] | None = None,
    ) -> None:
        self.names = tuple(names)
        self.models_dir = models_dir
        self.batch_size = batch_size
        self.batch_wait_ms = batch_wait_ms
        self.lazy = tuple(n for n in lazy if n in self.names)
        self.poll_seconds = poll_seconds
        self._on_batch = on_batch
        self._on_loaded = on_loaded
        self._on_serving = on_serving  # (model, previous version, new version or None when a swap failed)
        self._preloaded = dict(preloaded or {})
        self._loader = loader
        self._models: dict[str, LoadedModel] = {}
        self._extra: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._errors: dict[str, str] = {}
        self._reload_errors: dict[str, str] = {}
        self._observed: dict[str, str | None] = {}  # the promoted id on disk when last looked at
        self._history: dict[str, list[dict[str, Any]]] = {name: [] for name in self.names}
        self._events = {name: threading.Event() for name in self.names}
        self._swap_locks = {name: threading.Lock() for name in self.names}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._poller: threading.Thread | None = None

    # ---- loading ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load eager models now (errors propagate: the service cannot start without them)."""
        for name in self.names:
            if name in self.lazy:
                thread = threading.Thread(target=self._load_quietly, args=(name,), name=f"load-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)
            else:
                self._load(name)
        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll, name="model-poller", daemon=True)
            self._poller.start()

    def _load_quietly(self, name: str) -> None:
        try:
            self._load(name)
        except Exception as exc:  # a lazy model failing must not kill the server; readyz reports it
            log.exception("loading model %s failed", name)
            with self._lock:
                self._errors[name] = f"{type(exc).__name__}: {exc}"
            self._events[name].set()

    def _load(self, name: str) -> None:
        preloaded = self._preloaded.get(name)
        try:
            info: versions.VersionInfo | None = versions.promoted_version(name, self.models_dir)
        except versions.ModelNotFoundError:
            if preloaded is None:
                raise
            info = None
        if preloaded is not None:
            loaded = self._wrap(name, preloaded, getattr(preloaded, "model_dir", None), time.perf_counter(), warm=False)
        else:
            assert info is not None
            loaded = self._build(name, info)
        with self._swap_locks[name], self._lock:
            self._models[name] = loaded
            self._observed[name] = info.id if info else None
            self._history[name].append({"version": loaded.version, "since": _iso(loaded.loaded_at)})
        self._events[name].set()
        if self._on_loaded:
            self._on_loaded(name)
        self._notify(name, None, loaded.version)
        log.info("model %s %s ready in %.2f s", name, loaded.version, loaded.load_seconds)

    def _build(self, name: str, info: versions.VersionInfo) -> LoadedModel:
        """Load and warm one version (the slow part: TensorFlow traces the network)."""
        started = time.perf_counter()
        recognizer = self._loader(name, info.path)
        metadata = getattr(recognizer, "metadata", None)
        if isinstance(metadata, dict) and metadata.get("version") != info.id:
            recognizer.metadata = {**metadata, "version": info.id}  # the folder name is the version id
        return self._wrap(name, recognizer, info.path, started, warm=True)

    def _wrap(self, name: str, recognizer: Any, path: Path | None, started: float, *, warm: bool) -> LoadedModel:
        observer = self._on_batch(name) if self._on_batch else None
        if self.batch_size > 1:
            batcher: MicroBatcher | DirectPredictor = MicroBatcher(
                recognizer.predict_scores,
                max_batch=self.batch_size,
                max_wait_ms=self.batch_wait_ms,
                name=name,
                on_batch=observer,
            )
        else:
            batcher = DirectPredictor(recognizer.predict_scores, on_batch=observer)
        if warm:
            warm_up(recognizer, sorted({1, self.batch_size}))
        return LoadedModel(name, recognizer, batcher, time.perf_counter() - started, path)

    # ---- handing models out -------------------------------------------------------------------------

    def get(self, name: str, wait: float = LOAD_WAIT_SECONDS) -> LoadedModel:
        """The serving version, for looking at (predictions go through ``acquire``)."""
        if name not in self._events:
            raise ModelUnavailableError(name, f"unknown model; choose one of {', '.join(self.names)}")
        if not self._events[name].wait(wait):
            raise ModelUnavailableError(name, "still loading")
        with self._lock:
            if name in self._models:
                return self._models[name]
            raise ModelUnavailableError(name, self._errors.get(name, "failed to load"))

    def serving_version(self, name: str) -> str | None:
        """The version ``name`` serves now, or None while it is not loaded (never waits)."""
        with self._lock:
            model = self._models.get(name)
        return model.version if model is not None else None

    @contextlib.contextmanager
    def acquire(self, name: str, version: str | None = None, wait: float = LOAD_WAIT_SECONDS) -> Iterator[LoadedModel]:
        """The serving version (or ``version``), kept loaded until the block ends even if a swap happens.

        Raises ``versions.VersionNotFoundError`` for a version the model does not have."""
        model = self._checkout(name, version, wait)
        try:
            yield model
        finally:
            with self._lock:
                model.in_flight -= 1
                finished = model.retired and model.in_flight == 0
            if finished:
                self._unload(model)

    def _checkout(self, name: str, version: str | None, wait: float) -> LoadedModel:
        self.get(name, wait)  # unknown, still loading or failed: raises
        with self._lock:
            current = self._models[name]
            if version is None or version == current.version:
                current.in_flight += 1
                return current
            cached = self._take_extra_locked(name, version)
        if cached is not None:
            return cached
        info = versions.get_version(name, version, self.models_dir)
        with self._swap_locks[name]:  # one load per model at a time; another request may have loaded it
            with self._lock:
                current = self._models[name]
                if version == current.version:
                    current.in_flight += 1
                    return current
                cached = self._take_extra_locked(name, version)
            if cached is not None:
                return cached
            loaded = self._build(name, info)
            with self._lock:
                loaded.in_flight += 1
                self._extra[(name, version)] = loaded
                evicted = []
                while len(self._extra) > EXTRA_VERSIONS:
                    _, old = self._extra.popitem(last=False)
                    if self._retire_locked(old):
                        evicted.append(old)
        for old in evicted:
            self._unload(old)
        log.info("model %s: loaded version %s on request in %.2f s", name, version, loaded.load_seconds)
        return loaded

    def _take_extra_locked(self, name: str, version: str) -> LoadedModel | None:
        cached = self._extra.get((name, version))
        if cached is not None:
            self._extra.move_to_end((name, version))
            cached.in_flight += 1
        return cached

    def _retire_locked(self, model: LoadedModel) -> bool:
        """Take a model out of service; True when nobody uses it any more (the caller unloads it)."""
        model.retired = True
        return model.in_flight == 0

    @staticmethod
    def _unload(model: LoadedModel) -> None:
        model.batcher.close()
        log.info("model %s: unloaded version %s", model.name, model.version)

    # ---- hot swap -----------------------------------------------------------------------------------

    def reload(self, name: str) -> dict[str, Any]:
        """Serve the version promoted on disk now: load and warm it beside the old one, switch, and
        unload the old one when its last request is done. Errors leave the old version serving."""
        if name not in self._events:
            raise ModelUnavailableError(name, f"unknown model; choose one of {', '.join(self.names)}")
        if not self._events[name].is_set():
            raise ModelUnavailableError(name, "still loading")
        with self._swap_locks[name]:
            info = versions.promoted_version(name, self.models_dir)
            with self._lock:
                self._observed[name] = info.id
                old = self._models.get(name)
            if old is not None and old.version == info.id:
                return {"model": name, "version": info.id, "previous": info.id, "changed": False}
            try:
                with self._lock:
                    reused = self._extra.pop((name, info.id), None)
                new = reused or self._build(name, info)
            except Exception as exc:
                with self._lock:
                    self._reload_errors[name] = f"version {info.id}: {type(exc).__name__}: {exc}"
                self._notify(name, old.version if old else None, None)
                raise
            with self._lock:
                self._models[name] = new
                self._errors.pop(name, None)
                self._reload_errors.pop(name, None)
                self._history[name].append({"version": new.version, "since": _iso(time.time())})
                unload_now = old is not None and self._retire_locked(old)
        if unload_now and old is not None:
            self._unload(old)
        previous = old.version if old is not None else None
        self._notify(name, previous, new.version)
        log.info("model %s: now serving %s (was %s; loaded in %.2f s)", name, new.version, previous, new.load_seconds)
        return {
            "model": name,
            "version": new.version,
            "previous": previous,
            "changed": True,
            "load_seconds": round(new.load_seconds, 3),
        }

    def _notify(self, name: str, previous: str | None, version: str | None) -> None:
        if self._on_serving is not None:
            try:
                self._on_serving(name, previous, version)
            except Exception:  # metrics must never break serving
                log.exception("on_serving callback failed")

    def _poll(self) -> None:
        """Every ``poll_seconds``: swap in any model whose promoted version changed on disk."""
        while not self._stop.wait(self.poll_seconds):
            for name in self.names:
                if self._stop.is_set() or not self._events[name].is_set():
                    continue
                try:
                    promoted = versions.promoted_version(name, self.models_dir).id
                    with self._lock:
                        changed = promoted != self._observed.get(name)
                    if changed:
                        self.reload(name)
                except Exception:  # the old version keeps serving; the error shows in /api/v1/models
                    log.exception("model %s: reloading the promoted version failed", name)

    # ---- state --------------------------------------------------------------------------------------

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

    def loaded_versions(self, name: str) -> dict[str, int]:
        """Version id -> requests in flight, for every version of ``name`` loaded now."""
        with self._lock:
            found = {m.version: m.in_flight for (n, _), m in self._extra.items() if n == name}
            if name in self._models:
                found[self._models[name].version] = self._models[name].in_flight
        return found

    def history(self, name: str) -> list[dict[str, Any]]:
        """Which version served from when, since this process started."""
        with self._lock:
            return [dict(entry) for entry in self._history.get(name, [])]

    def reload_error(self, name: str) -> str | None:
        with self._lock:
            return self._reload_errors.get(name)

    def ready(self) -> bool:
        """Ready when every eager model is loaded (a lazy one may still be loading)."""
        status = self.status()
        return all(status[n] == "loaded" for n in self.names if n not in self.lazy)

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new predictions, and wait (at most ``timeout`` s) for models still loading, so no
        thread is inside TensorFlow when the interpreter shuts down (that aborts the process)."""
        self._stop.set()
        with self._lock:
            models = list(self._models.values()) + list(self._extra.values())
        for model in models:
            model.batcher.close()
        deadline = time.monotonic() + timeout
        threads = self._threads + ([self._poller] if self._poller else [])
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
