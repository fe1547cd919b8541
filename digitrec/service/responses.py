"""How the service answers: JSON bodies, and the one mapping from exceptions to HTTP errors.

Every error body is ``{"error": <short code>, "message": <sentence>}``. Unexpected exceptions are logged
with their traceback on the server and answered with a generic 500: a client never sees a traceback.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request, Response

from digitrec.errors import (
    ConfigurationError,
    ImageTooLargeError,
    InvalidImageError,
    NoDigitFoundError,
    UnsupportedImageTypeError,
)
from digitrec.model.versions import VersionNotFoundError
from digitrec.records.exceptions import InvalidCursorError, StoreUnavailableError
from digitrec.service.batcher import BatcherClosedError
from digitrec.service.models import ModelUnavailableError
from digitrec.service.views import error_page

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the handlers raise on purpose, with its status and short code."""

    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


class JsonResponse(Response):
    """A Werkzeug response whose body is one JSON document in bytes. Answering it skips what
    ``Response.__call__`` does for any body and header (a copy of the headers, a scan of them for
    ``Location`` and ``Content-Length``, an iterator wrapped around the body): none of it changes a
    buffered JSON answer, and it is about 7 µs of every prediction. A ``HEAD`` request, a status
    without a body, a header Werkzeug rewrites or a close callback take Werkzeug's own path."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        status = self.status_code
        plain = (
            200 <= status < 300
            and status != 204
            and environ.get("REQUEST_METHOD") != "HEAD"
            and not self._on_close
            and isinstance(self.response, list)
            and not any(name.lower() in ("location", "content-location") for name, _ in self.headers)
        )
        if not plain:
            return super().__call__(environ, start_response)
        start_response(self.status, self.headers.to_wsgi_list())
        return self.response


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return JsonResponse(body, status=status, headers=headers, content_type="application/json; charset=utf-8")


def error_response(
    status: int,
    error: str,
    message: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """JSON for programs; a small escaped HTML page when a browser navigates to a page URL."""
    if request is not None and wants_html(request):
        page = error_page(status, message)  # the site's layout, with its navigation header
        return Response(page, status=status, headers=headers, content_type="text/html; charset=utf-8")
    return json_response({"error": error, "message": message}, status=status, headers=headers)


def wants_html(request: Request) -> bool:
    """A browser navigating to a page (not /api/, GET, HTML preferred over JSON)."""
    if request.path.startswith("/api/") or request.method != "GET":
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]


def _code_of(exc: HTTPException) -> str:
    name = exc.name or "error"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def image_error_status(exc: BaseException) -> tuple[int, str] | None:
    """(HTTP status, short code) for a problem with one image's content; None for anything else."""
    if isinstance(exc, UnsupportedImageTypeError):
        return 415, "unsupported_media_type"
    if isinstance(exc, NoDigitFoundError):
        return 400, "no_digit_found"
    if isinstance(exc, InvalidImageError):
        return 400, "invalid_image"
    if isinstance(exc, ImageTooLargeError):
        return 413, "image_too_large"
    return None


def exception_response(exc: BaseException, request: Request) -> Response:
    """The response for any exception a handler raised."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.error, exc.message, request, exc.headers)
    image_error = image_error_status(exc)
    if image_error is not None:
        return error_response(*image_error, str(exc), request)
    if isinstance(exc, InvalidCursorError):
        return error_response(400, "invalid_cursor", str(exc), request)
    if isinstance(exc, VersionNotFoundError):
        body = {"error": "unknown_version", "message": str(exc), "available_versions": exc.available}
        return json_response(body, status=404)
    if isinstance(exc, ModelUnavailableError):
        status = 404 if exc.reason.startswith("unknown") else 503
        return error_response(status, "model_unavailable", str(exc), request)
    if isinstance(exc, (StoreUnavailableError, BatcherClosedError, TimeoutError)):
        log.warning("service unavailable: %s", exc)
        return error_response(
            503,
            "unavailable",
            "the service cannot store or predict right now; retry",
            request,
            {"Retry-After": "1"},
        )
    if isinstance(exc, ConfigurationError):
        log.error("configuration error while serving: %s", exc)
        return error_response(500, "internal_error", "the server is misconfigured", request)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        headers = dict(exc.get_headers()) if status == 405 else {}
        headers.pop("Content-Type", None)
        message = exc.description or exc.name
        if status == 413:
            message = "the request body is larger than this server accepts"
        return error_response(status, _code_of(exc), re.sub(r"<[^>]+>", "", message), request, headers)
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return error_response(500, "internal_error", "the server failed to answer this request", request)
