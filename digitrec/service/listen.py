"""Find out whether the service can listen on its address before it spends seconds loading models.

waitress and gunicorn bind only once the app exists (waitress) or retry for seconds (gunicorn), and
then fail with a traceback or a page of retries. A test bind on the same address, with the same
``SO_REUSEADDR`` they set, fails for the same reasons, at once, and names the setting to change.
"""

from __future__ import annotations

import errno
import socket

from digitrec.errors import ConfigurationError


def display_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_can_listen(host: str, port: int) -> None:
    """Raise ``ConfigurationError`` (one line, naming --port or --host) if ``host:port`` cannot be bound.

    Port 0 (any free port) always can. The test socket is closed again before the server binds.
    """
    if port == 0:
        return
    shown = display_address(host, port)
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}: {exc.strerror}; pass --host") from None
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as both servers: TIME_WAIT is fine
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigurationError(f"{shown} is in use; pass --port") from None
                if exc.errno == errno.EACCES:
                    raise ConfigurationError(f"{shown} needs privileges to listen on; pass --port") from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise ConfigurationError(f"{host} is not an address of this machine; pass --host") from None
                raise ConfigurationError(f"cannot listen on {shown}: {exc.strerror}") from None
