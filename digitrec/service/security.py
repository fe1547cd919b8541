"""Bearer-token check for records and stored images, and the headers every response carries."""

from __future__ import annotations

import hmac

from werkzeug.wrappers import Request, Response

from digitrec.service.responses import ApiError

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def require_token(request: Request, token: str | None) -> None:
    """Raise 401 unless no token is configured or the request carries ``Authorization: Bearer <token>``."""
    if not token:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return
    raise ApiError(
        401,
        "unauthorized",
        "this resource needs the header 'Authorization: Bearer <token>'",
        {"WWW-Authenticate": 'Bearer realm="digitrec"'},
    )


def add_security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    return response
