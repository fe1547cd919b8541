"""Request bodies over the upload limit: a JSON 413 that every client can read.

A server that answers early and closes the connection with the body still unread makes the kernel
reset it, and a client that sends the whole body before reading (Python's urllib and requests, anything
without ``Expect: 100-continue``) then gets "connection reset" instead of the 413. So the app reads and
discards an oversized body, up to ``DRAIN_FACTOR`` times the limit, before it answers; beyond that it
answers at once (and the client may see the reset). This lives in the WSGI app, so it holds under any
server; waitress, which buffers the whole body before calling the app, is given the drain limit as its
own limit so these bodies reach the app at all.
"""

from __future__ import annotations

from typing import Any

DRAIN_FACTOR = 4  # bodies up to this many times the limit are read and discarded before the 413
CHUNK = 256 * 1024


def drain_limit(max_upload_bytes: int) -> int:
    """The largest body the service reads (and throws away) to answer 413 cleanly."""
    return DRAIN_FACTOR * max_upload_bytes


def too_large_message(length: int, limit: int) -> str:
    return f"the request body ({length:,} bytes) is larger than the {limit:,} bytes this server accepts"


def discard_body(environ: dict[str, Any], length: int, limit: int) -> bool:
    """Read and drop up to ``length`` bytes of the body (never more than ``limit``); True if all were read."""
    if length > limit:
        return False
    stream = environ.get("wsgi.input")
    if stream is None:
        return True
    left = length
    try:
        while left > 0:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
    except (OSError, ValueError):  # the client went away: nothing left to answer
        return False
    return left == 0
