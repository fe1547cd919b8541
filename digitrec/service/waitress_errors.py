"""waitress's own error answers (413, 400, 431, 501 before the app is called) as the service's JSON.

waitress writes these itself, as ``text/plain``, when a request breaks its limits or HTTP's rules; the
API promises ``{"error": ..., "message": ...}`` for every error, so the server's channels use a parser
that wraps each such error in one that renders JSON. Status codes and connection handling are waitress's.
"""

from __future__ import annotations

import json
import re
from typing import Any


def _json_error_class(base: type) -> type:
    class JsonError(base):  # type: ignore[misc, valid-type]
        """The same error, rendered as the service's JSON body."""

        def __init__(self, original: Any) -> None:
            super().__init__(original.body)
            self.code, self.reason = original.code, original.reason

        def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
            code = re.sub(r"[^a-z0-9]+", "_", self.reason.lower()).strip("_")
            message = self.reason if not self.body else f"{self.reason}: {self.body}"
            if self.code == 413:
                message = f"the request body is larger than this server accepts ({self.body})"
            body = json.dumps({"error": code, "message": message}).encode("utf-8")
            return f"{self.code} {self.reason}", [("Content-Type", "application/json; charset=utf-8")], body

    return JsonError


def use_json_errors(server: Any) -> None:
    """Make ``server`` (from ``waitress.create_server``) answer its own errors in JSON."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser
    from waitress.utilities import Error

    json_error = _json_error_class(Error)

    class JsonErrorParser(HTTPRequestParser):
        def received(self, data: bytes) -> int:
            consumed = super().received(data)
            if self.error is not None and not isinstance(self.error, json_error):
                self.error = json_error(self.error)
            return consumed

    class JsonErrorChannel(HTTPChannel):
        parser_class = JsonErrorParser

    # one server, or a MultiSocketServer whose map holds one server per listening socket
    targets = [server] if hasattr(server, "channel_class") else list(getattr(server, "map", {}).values())
    for target in targets:
        if hasattr(target, "channel_class"):
            target.channel_class = JsonErrorChannel
