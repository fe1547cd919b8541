"""`create_app(config)`: the WSGI application (Werkzeug routing, requests and responses; no framework)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from werkzeug.routing import Map, RequestRedirect
from werkzeug.wrappers import Request, Response

from digitrec.records.spool_files import total_depth, worker_spool
from digitrec.records.store import RecordStore
from digitrec.service.access import AccessPolicy, secrets_for
from digitrec.service.body_limit import discard_body, drain_limit, too_large_message
from digitrec.service.config import ServiceConfig
from digitrec.service.context import Route, ServiceContext, set_session_cookie
from digitrec.service.metrics import ServiceMetrics
from digitrec.service.models import ModelRegistry
from digitrec.service.multipart import ServiceRequest
from digitrec.service.predictor import Predictor
from digitrec.service.rate_limit import RateLimiter
from digitrec.service.responses import ApiError, exception_response
from digitrec.service.routes import api, legacy, ops, pages
from digitrec.service.security import add_security_headers, check_same_origin
from digitrec.service.uploads import UploadStore

log = logging.getLogger(__name__)

MAX_FORM_MEMORY = 1024 * 1024
ALL_ROUTES: tuple[Route, ...] = (*pages.ROUTES, *api.ROUTES, *legacy.ROUTES, *ops.ROUTES)


class DigitrecApp:
    """The WSGI callable. Owns the model batchers and (unless it was handed one) the record store."""

    def __init__(self, context: ServiceContext, routes: Iterable[Route] = ALL_ROUTES, *, owns_store: bool) -> None:
        self.context = context
        self.config = context.config
        routes = tuple(routes)
        self.url_map = Map([route.rule() for route in routes], strict_slashes=False)
        self.handlers = {route.endpoint: route.handler for route in routes}
        # Paths without variables, looked up before the Map's matcher (about 10 µs a request); other
        # methods (HEAD, 405s) and every other path still go through the Map.
        self.static_routes: dict[tuple[str, str], str] = {}
        for route in routes:
            for method in route.methods if "<" not in route.path else ():
                self.static_routes.setdefault((route.path, method), route.endpoint)  # the Map's first rule wins too
        self._owns_store = owns_store
        self._closed = False
        self.retention: Any = None  # a deletion.RetentionPurger with DIGITREC_RETENTION_DAYS

    def dispatch(self, request: Request) -> tuple[str, Response]:
        endpoint = "unmatched"
        try:
            check_same_origin(request, self.context.access.allowed_origins)
            if "token=" in request.environ.get("QUERY_STRING", "") and request.method == "GET":
                return "token_exchange", self.exchange_token(request)
            static = self.static_routes.get((request.environ.get("PATH_INFO", ""), request.method))
            if static is not None:
                endpoint, values = static, {}
            else:
                endpoint, values = self.url_map.bind_to_environ(request.environ).match()
            return endpoint, self.handlers[endpoint](self.context, request, **values)
        except RequestRedirect as redirect:
            return endpoint, redirect.get_response(request.environ)
        except Exception as exc:  # every failure becomes a clean JSON/HTML error, never a traceback
            return endpoint, exception_response(exc, request)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        started = time.perf_counter()
        request = ServiceRequest(environ)
        request.max_content_length = self.config.max_upload_bytes
        request.max_form_memory_size = MAX_FORM_MEMORY
        length = request.content_length
        if length is not None and length > self.config.max_upload_bytes:
            endpoint, response = "oversized", self.refuse_oversized(request, length)
        else:
            endpoint, response = self.dispatch(request)
        add_security_headers(response)
        metrics = self.context.metrics
        metrics.answered(request.method, endpoint, response.status_code, time.perf_counter() - started)
        return response(environ, start_response)

    def exchange_token(self, request: Request) -> Response:
        """``/any/page?token=...`` (the address printed at start): a session cookie for a valid token,
        and a redirect to the same address without the token, so it leaves the address bar and history."""
        args = request.args.to_dict(flat=False)
        token = (args.pop("token", None) or [""])[0]
        location = request.path + (f"?{urlencode(args, doseq=True)}" if args else "")
        response = Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})
        role = self.context.access.role_for_token(token) if token else None
        if role is not None:
            set_session_cookie(self.context, request, response, role, token)
        return response

    def refuse_oversized(self, request: Request, length: int) -> Response:
        """413 as JSON, after reading the body away so the client is still listening (see body_limit)."""
        limit = self.config.max_upload_bytes
        error = ApiError(413, "request_entity_too_large", too_large_message(length, limit))
        response = exception_response(error, request)
        if not discard_body(request.environ, length, drain_limit(limit)):
            log.info("refused a %d-byte body without reading it (over %d)", length, drain_limit(limit))
        return response

    def close(self) -> None:
        """Stop batchers and close the store if this app opened it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self.retention is not None:
            self.retention.close()
        self.context.models.close()
        if self._owns_store:
            self.context.store.close()


def open_records_store(config: ServiceConfig) -> RecordStore:
    from digitrec.records import open_store
    from digitrec.records.config import RecordsConfig

    records = RecordsConfig.from_env(config.environ, data_dir=config.data_dir)
    if config.workers > 1:  # one spool per process; a dead worker's is adopted by the others
        records = dataclasses.replace(records, spool_file=worker_spool(records.spool_path, os.getpid()))
    return open_store(records)


def access_policy(config: ServiceConfig, store: RecordStore) -> AccessPolicy:
    """Who may do what on this service (see ``access``): open on loopback without tokens, else protected.
    The token and the client-hash salt live where every replica finds them: the store when it can share
    them (Cassandra), else the data volume."""
    primary = getattr(store, "primary", store)
    return AccessPolicy(
        host=config.host,
        data_dir=config.data_dir,
        environ=config.environ,
        api_token=config.api_token,
        secrets_source=secrets_for(primary, config.data_dir),
    )


def create_app(
    config: ServiceConfig | None = None,
    *,
    store: RecordStore | None = None,
    recognizers: dict[str, Any] | None = None,
    wait_for_models: bool = False,
) -> DigitrecApp:
    """Build the app: open the store, load (and warm) the models, wire the routes.

    ``store`` and ``recognizers`` let tests share one loaded model between apps or wrap the real store
    (the caller keeps ownership of a store it passes in). ``wait_for_models`` also waits for lazily
    loaded models, for scripts that need every model before the first request.
    """
    config = config or ServiceConfig.from_env()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    metrics = ServiceMetrics()
    owns_store = store is None
    store = store if store is not None else open_records_store(config)
    try:
        access = access_policy(config, store)
        if metrics.multiprocess_dir:
            spool_path = store.spool.path if hasattr(store, "spool") else config.data_dir / "spool.sqlite3"
            metrics.watch_spool(lambda: total_depth(spool_path))
        else:
            metrics.watch_spool(lambda: store.spool_depth)
        models = ModelRegistry(
            config.models,
            models_dir=config.trained_models_dir,
            batch_size=config.batch_size,
            batch_wait_ms=config.batch_wait_ms,
            lazy=config.lazy_models,
            on_batch=metrics.batch_observer,
            on_loaded=lambda name: metrics.models_loaded.labels(model=name).set(1),
            preloaded=recognizers,
            poll_seconds=config.model_poll_seconds,
            on_serving=metrics.serving_changed,
        )
        models.start()
        if wait_for_models:
            for name in config.models:
                models.get(name)
        uploads = UploadStore(config.data_dir, fsync=config.fsync_uploads)
        predictor = Predictor(
            models, store, uploads, metrics, max_pixels=config.max_pixels, keep_upload_files=config.keep_upload_files
        )
    except BaseException:
        if owns_store:
            store.close()
        raise
    limit = RateLimiter(config.corrections_per_minute)
    context = ServiceContext(config, models, store, uploads, metrics, predictor, access, limit)
    app = DigitrecApp(context, owns_store=owns_store)
    app.retention = start_retention(config, store)
    return app


def start_retention(config: ServiceConfig, store: RecordStore) -> Any:
    """With DIGITREC_RETENTION_DAYS, a thread purging older records now and every hour (see deletion)."""
    from digitrec.records.config import RecordsConfig
    from digitrec.records.deletion import RetentionPurger

    records = RecordsConfig.from_env(config.environ, data_dir=config.data_dir)
    if not records.retention_days:
        return None
    own = getattr(getattr(store, "spool", None), "path", None)
    return RetentionPurger(store, records.retention_days, config.data_dir, records.spool_path.parent, own)
