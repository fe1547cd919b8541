"""Import TensorFlow once, quietly, and without the plotting library it does not need here.

Every digitrec module that uses TensorFlow imports it as ``from digitrec.runtime.tf_loader import tf``, so the
first import in a process goes through ``_import_tensorflow`` whichever module comes first.

* TensorFlow prints about ten lines of internals on stderr (the oneDNN banner twice, "Could not find
  cuda drivers", a ``failed call to cuInit`` *error* on every machine without a GPU, CPU-feature and MLIR
  notes). Unless the user chose a level below 3 with ``TF_CPP_MIN_LOG_LEVEL`` (``digitrec -v`` sets
  it to 0, see ``digitrec.runtime.verbosity``), this sets it to 3 and drops the banner lines that C++ static
  initialisers write while the shared libraries load, before that variable is read. Real failures
  still reach the caller as exceptions.
* ``import tensorflow`` eagerly imports Keras, and Keras imports ``matplotlib.pyplot`` when it is
  installed (start-up time and memory for a server that never plots). Keras copes with matplotlib missing,
  so it is hidden for the duration of the import only; ``digitrec.learning.plots`` imports it when it plots.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

LOG_LEVEL_VAR = "TF_CPP_MIN_LOG_LEVEL"
# Lines the shared libraries print while they load, before TF_CPP_MIN_LOG_LEVEL is consulted.
LOAD_NOISE = re.compile(
    rb"All log messages before absl::InitializeLog\(\) is called"
    rb"|\] oneDNN custom operations are on"
    rb"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
)


def quiet_requested(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Quiet unless the user chose a level below 3 for TensorFlow's own log (``-v`` sets it to 0)."""
    return environ.get(LOG_LEVEL_VAR, "").strip() in ("", "3")


@contextlib.contextmanager
def _filtered_stderr(noise: re.Pattern[bytes]) -> Iterator[None]:
    """Route file descriptor 2 through a pipe and drop matching lines; everything else is passed on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no usable stderr (a daemon with fd 2 closed): nothing to filter
        yield
        return

    def forward() -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not noise.search(line))
                if kept:
                    os.write(saved, kept)
        if pending and not noise.search(pending):
            os.write(saved, pending)

    reader = threading.Thread(target=forward, name="tf-import-stderr", daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader sees EOF and finishes
        reader.join(timeout=5)
        os.close(saved)


@contextlib.contextmanager
def _without_matplotlib() -> Iterator[None]:
    hidden = "matplotlib" not in sys.modules
    if hidden:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]  # makes `import matplotlib` fail
    try:
        yield
    finally:
        if hidden and sys.modules.get("matplotlib", ...) is None:
            del sys.modules["matplotlib"]


def _import_tensorflow() -> Any:
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    quiet = quiet_requested()
    if quiet:
        os.environ[LOG_LEVEL_VAR] = "3"
    with _without_matplotlib(), _filtered_stderr(LOAD_NOISE) if quiet else contextlib.nullcontext():
        import tensorflow

    return tensorflow


tf = _import_tensorflow()
