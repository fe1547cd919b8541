"""Run a child process for a test and, when it fails, show what it printed.

``subprocess.run(..., check=True, capture_output=True)`` fails with a bare ``CalledProcessError`` whose
captured output pytest does not print, so a broken install or script says nothing about why.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Sequence
from typing import IO, Any

ANNOUNCED_URL = re.compile(rb"http://127\.0\.0\.1:(\d+)/")
MAX_SHOWN = 20_000  # characters of each stream kept in the failure message (the end, where errors are)


def _tail(stream: str | bytes | None) -> str:
    if stream is None:
        return "(not captured)"
    text = stream.decode(errors="replace") if isinstance(stream, bytes) else stream
    text = text.rstrip()
    if not text:
        return "(empty)"
    return text if len(text) <= MAX_SHOWN else "...\n" + text[-MAX_SHOWN:]


def run_checked(command: Sequence[Any], *, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run ``command`` with its output captured; an ``AssertionError`` carrying stdout and stderr if it
    exits non-zero or times out."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    shown = " ".join(str(part) for part in command)
    try:
        result = subprocess.run(command, check=False, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"{shown}\ndid not finish within {timeout:.0f} s\n--- stdout ---\n{_tail(exc.stdout)}\n"
            f"--- stderr ---\n{_tail(exc.stderr)}"
        ) from None
    if result.returncode != 0:
        raise AssertionError(
            f"{shown}\nexited with {result.returncode}\n--- stdout ---\n{_tail(result.stdout)}\n"
            f"--- stderr ---\n{_tail(result.stderr)}"
        )
    return result


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM ``proc`` and wait up to ``grace`` seconds for a clean exit, then SIGKILL it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def announced_port(stdout: IO[bytes], timeout: float, lines: list[str] | None = None) -> int | None:
    """The port of the first ``http://127.0.0.1:PORT/`` a server prints on ``stdout`` (None if none within
    ``timeout`` s). A daemon thread keeps draining ``stdout``, so the server never blocks on a full pipe,
    and appends each line to ``lines``."""
    found: list[int] = []
    ready = threading.Event()

    def read() -> None:
        for raw in stdout:
            if lines is not None:
                lines.append(raw.decode(errors="replace"))
            match = ANNOUNCED_URL.search(raw)
            if match and not found:
                found.append(int(match.group(1)))
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    return found[0] if ready.wait(timeout) else None
