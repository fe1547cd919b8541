"""The pages a person opens: the drawing page, the records list, and the static files they use."""

from __future__ import annotations

from pathlib import Path

from werkzeug.exceptions import NotFound
from werkzeug.utils import send_from_directory
from werkzeug.wrappers import Request, Response

from digitrec.service import views
from digitrec.service.context import Route, ServiceContext
from digitrec.service.filters import filter_from_args
from digitrec.service.responses import ApiError, wants_html

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
HTML = "text/html; charset=utf-8"


def index(ctx: ServiceContext, request: Request) -> Response:
    page = views.index_page(list(ctx.models.names), token_required=ctx.protected)
    return Response(page, content_type=HTML, headers={"Cache-Control": "no-cache"})


def records(ctx: ServiceContext, request: Request) -> Response:
    protected = ctx.protected
    try:
        ctx.require(request, "viewer")
    except ApiError as exc:
        if exc.status != 401 or not wants_html(request):
            raise
        # A browser cannot send the Authorization header itself: give it the page with a token field;
        # app.js exchanges the token typed there for a session cookie and loads the page again.
        page = views.records_page([], None, 0, protected=True, locked=True)
        headers = {"Cache-Control": "no-cache", **exc.headers}
        return Response(page, status=401, content_type=HTML, headers=headers)
    try:
        limit = min(max(int(request.args.get("limit", "25")), 1), 100)
    except ValueError:
        raise ApiError(400, "invalid_limit", "limit must be a whole number") from None
    where = filter_from_args(request.args)
    cursor = request.args.get("cursor") or None
    page = ctx.store.latest(limit, cursor) if where.is_empty else ctx.store.find(where, limit, cursor)
    html = views.records_page(page.records, page.next_cursor, limit, where, list(ctx.models.names), protected=protected)
    return Response(html, content_type=HTML, headers={"Cache-Control": "no-cache"})


def dashboard(ctx: ServiceContext, request: Request) -> Response:
    """The page is a shell without data (so no token needed); its script asks /api/v1/dashboard."""
    page = views.dashboard_page(list(ctx.models.names), token_required=ctx.protected)
    return Response(page, content_type=HTML, headers={"Cache-Control": "no-cache"})


def static(ctx: ServiceContext, request: Request, filename: str) -> Response:
    try:
        response = send_from_directory(STATIC_DIR, filename, request.environ, max_age=3600)
    except NotFound:
        raise ApiError(404, "not_found", "no such static file") from None
    return response


def favicon(ctx: ServiceContext, request: Request) -> Response:
    """Browsers ask for /favicon.ico on every site; answer with the page's own icon (SVG), not a 404."""
    response = send_from_directory(STATIC_DIR, "favicon.svg", request.environ, max_age=86400)
    response.mimetype = "image/svg+xml"
    return response


ROUTES = [
    Route("/", "pages.index", index),
    Route("/records", "pages.records", records),
    Route("/dashboard", "pages.dashboard", dashboard),
    Route("/static/<path:filename>", "pages.static", static),
    Route("/favicon.ico", "pages.favicon", favicon),
]
