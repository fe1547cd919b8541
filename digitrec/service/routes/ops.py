"""Probes and metrics for operators: /healthz (alive), /readyz (can serve), /metrics (Prometheus)."""

from __future__ import annotations

import os

from werkzeug.wrappers import Request, Response

from digitrec.service.context import Route, ServiceContext
from digitrec.service.responses import json_response


def healthz(ctx: ServiceContext, request: Request) -> Response:
    return json_response({"status": "ok"})


def readyz(ctx: ServiceContext, request: Request) -> Response:
    """Ready when the eager models are loaded and records are durable (primary store or spool).

    With several worker processes each answers for itself: ``pid`` says which one did.
    """
    spooling = getattr(ctx.store, "primary_down", None)
    try:
        health = ctx.store.health()
        store = {
            "ok": health.ok,
            "engine": health.engine,
            "detail": health.detail,
            "spool_depth": health.spool_depth,
            "spooling": bool(spooling),
        }
    except Exception as exc:  # a probe must answer, whatever the store does
        store = {
            "ok": False,
            "engine": getattr(ctx.store, "engine", "unknown"),
            "detail": f"health check failed: {type(exc).__name__}",
            "spool_depth": None,
            "spooling": bool(spooling),
        }
    models = ctx.models.status()
    # A store with a spool keeps 200s durable while its primary is down, so it still counts as ready.
    durable = bool(store["ok"]) or spooling is not None
    ready = ctx.models.ready() and durable
    body = {
        "status": "ready" if ready else "not_ready",
        "pid": os.getpid(),
        "workers": ctx.config.workers,
        "models": models,
        "store": store,
    }
    return json_response(body, status=200 if ready else 503)


def metrics(ctx: ServiceContext, request: Request) -> Response:
    return Response(ctx.metrics.render(), content_type=ctx.metrics.content_type)


ROUTES = [
    Route("/healthz", "ops.healthz", healthz),
    Route("/readyz", "ops.readyz", readyz),
    Route("/metrics", "ops.metrics", metrics),
]
