"""What a serving process does around its models, shared by the one-process server and the workers:
TensorFlow's thread counts (set before it is imported) and the hand-back of start-up-only library pages."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from digitrec.service.config import ServiceConfig

log = logging.getLogger(__name__)


def limit_tensorflow_threads(threads: int) -> None:
    """Run each model call on ``threads`` cores (0 = TensorFlow's default of all of them).

    The batcher already gives TensorFlow whole batches; on a small machine the other cores are busy
    decoding images and answering HTTP, and a single-threaded call of this small network is faster
    (measured on 2 cores: 0.6 ms instead of 1.0 ms for one image, 2.3 instead of 3.1 ms for eight).
    TensorFlow reads these variables once, when it starts, so this must run before it is imported.
    """
    if threads <= 0:
        return
    if "tensorflow" in sys.modules:
        log.warning("TensorFlow already imported; its thread pools keep their sizes")
        return
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", str(threads))


def release_pages_when_loaded(app: Any, config: ServiceConfig) -> threading.Thread:
    """Once every model is loaded and warm, hand TensorFlow's start-up-only library pages back to the
    kernel (see ``memory``), then warm the models again so their hot pages are back before traffic."""
    from digitrec.service.memory import release_library_pages, rss_mb
    from digitrec.service.models import warm_up

    def run() -> None:
        models = app.context.models
        loaded = []
        for name in config.models:
            try:
                loaded.append(models.get(name))
            except Exception:  # a model that failed to load is reported by /readyz; release anyway
                log.warning("model %s not loaded; releasing library pages without it", name)
        before = rss_mb().get("rss", 0.0)
        accepted = release_library_pages()
        for model in loaded:
            warm_up(model.recognizer, (1, config.batch_size))
        log.info(
            "released read-only library pages (%d mappings): RSS %.0f MB -> %.0f MB",
            accepted,
            before,
            rss_mb().get("rss", 0.0),
        )

    thread = threading.Thread(target=run, name="release-library-pages", daemon=True)
    thread.start()
    return thread
