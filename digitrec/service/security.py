"""The cross-site check of state-changing requests, and the headers every response carries."""

from __future__ import annotations

from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

from digitrec.service.responses import ApiError

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
DEFAULT_PORTS = {"http": 80, "https": 443}


def check_same_origin(request: Request, allowed: frozenset[str] = frozenset()) -> None:
    """Refuse (403) a state-changing request a browser sent from a page of another site.

    Browsers send ``Origin`` with every cross-origin POST, form posts included, and ``Sec-Fetch-Site``
    with every request; programs (curl, scripts) send neither and pass. The origin's host and port must
    be the request's ``Host`` (a proxy keeps that header), or one of ``DIGITREC_ALLOWED_ORIGINS``.
    Ambient credentials (the session cookie, an open service on a laptop) are what a forged post
    would borrow, so this runs before any handler.
    """
    if request.method in SAFE_METHODS:
        return
    environ = request.environ
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        if environ.get("HTTP_SEC_FETCH_SITE", "same-origin") in ("same-origin", "none"):
            return
        raise ApiError(403, "cross_site_request", "requests from pages of other sites are refused")
    origin = origin.strip().rstrip("/").lower()
    if origin in allowed:
        return
    parts = urlsplit(origin)
    host = (environ.get("HTTP_HOST") or "").strip().lower()
    if parts.scheme in DEFAULT_PORTS and parts.hostname and _same_host(parts, host):
        return
    raise ApiError(403, "cross_site_request", "requests from pages of other sites are refused")


def _same_host(origin, host: str) -> bool:
    """Origin ``scheme://name[:port]`` against the Host header ``name[:port]`` (default ports omitted)."""
    try:
        origin_port = origin.port or DEFAULT_PORTS[origin.scheme]
    except ValueError:
        return False
    parsed = urlsplit(f"//{host}")
    try:
        host_port = parsed.port
    except ValueError:
        return False
    if parsed.hostname != origin.hostname:
        return False
    # Behind a TLS proxy the service sees http while the browser's origin is https: a Host without a
    # port matches the origin's default port under either scheme.
    return host_port == origin_port or (host_port is None and origin.port is None)


SECURITY_HEADERS = (
    ("content-security-policy", "Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "X-Content-Type-Options", "nosniff"),
    ("x-frame-options", "X-Frame-Options", "DENY"),
    ("referrer-policy", "Referrer-Policy", "no-referrer"),
    ("cross-origin-resource-policy", "Cross-Origin-Resource-Policy", "same-origin"),
)


def add_security_headers(response: Response) -> Response:
    """The headers above, unless the handler set its own. The names present are read once: each of
    ``Headers``' own lookups of a missing name raises and catches an exception."""
    headers = response.headers
    present = {name.lower() for name, _ in headers.items()}
    headers.extend([(name, value) for key, name, value in SECURITY_HEADERS if key not in present])
    return response
