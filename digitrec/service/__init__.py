"""The WSGI service: pages, JSON API, seed-compatible endpoints, micro-batching, metrics."""

from __future__ import annotations

from typing import Any

__all__ = ["ServiceConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so `digitrec serve --help` does not import the whole service stack.
    if name == "create_app":
        from digitrec.service.app import create_app

        return create_app
    if name == "ServiceConfig":
        from digitrec.service.config import ServiceConfig

        return ServiceConfig
    raise AttributeError(name)
