"""End a process that loaded TensorFlow without waiting seconds for the interpreter to tear it down.

After ``digitrec serve`` has stopped (server closed, store closed, background threads joined), a normal
interpreter exit still spends 3-4 s destroying TensorFlow's modules and C++ state, which keeps a
container's ``docker stop`` or a supervisor waiting. ``exit_process`` does what a normal exit does
that matters (join non-daemon threads, run ``atexit`` handlers, flush logs and stdio) and then leaves
with ``os._exit``. Processes that never imported TensorFlow exit the ordinary way.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written anyway
            pass
    os._exit(code)


def detach_stdout() -> None:
    """Point stdout at /dev/null once its reader has gone (``digitrec ... | head``), so that nothing
    printed later, nor the flush at exit, raises ``BrokenPipeError`` again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def print_or_detach(text: str) -> None:
    """``print(text)`` for a process that must go on when nobody reads its stdout (a server's URL line)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        detach_stdout()
