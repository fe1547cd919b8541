"""Run the app under granian (``granian_server``), gunicorn (``prefork``) or waitress (in this process):
one function shared by `digitrec serve` and `python webservice.py`."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from digitrec.runtime.process_exit import print_or_detach
from digitrec.service.access import startup_lines
from digitrec.service.access_log import with_access_log
from digitrec.service.body_limit import drain_limit
from digitrec.service.config import ServiceConfig
from digitrec.service.runtime import limit_tensorflow_threads, release_pages_when_loaded
from digitrec.service.waitress_errors import use_json_errors

log = logging.getLogger(__name__)

SHUTDOWN_WAIT = 30.0  # seconds to wait at shutdown for background model work (it takes 1-3 s)


def make_server(app: Any, config: ServiceConfig) -> Any:
    import waitress

    # waitress warns "Task queue depth is N" for every request that waits for a thread; under load that
    # is one log line per request. Queueing shows in the latency histogram of /metrics instead.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    server = waitress.create_server(
        with_access_log(app, config),
        host=config.host,
        port=config.port,
        threads=config.threads,
        # waitress reads the whole body before calling the app; up to this size it hands an oversized
        # one to the app, which answers the JSON 413 (see body_limit); beyond it waitress answers itself
        max_request_body_size=drain_limit(config.max_upload_bytes) + 1,
        connection_limit=max(100, config.threads * 16),
        channel_timeout=60,
        ident="digitrec",
        expose_tracebacks=False,
        # waitress drops X-Forwarded-* headers unless told otherwise; with DIGITREC_TRUSTED_PROXIES set
        # the app reads them itself, from those peers only (access.AccessPolicy.client_address).
        clear_untrusted_proxy_headers=not config.environ.get("DIGITREC_TRUSTED_PROXIES"),
    )
    use_json_errors(server)
    return server


def serve(config: ServiceConfig) -> int:
    """Load everything, print the URL, serve until SIGINT/SIGTERM (under the server ``config.http_server`` names)."""
    from digitrec.service.listen import check_can_listen

    check_can_listen(config.host, config.port)  # before seconds of model loading
    if config.http_server == "granian":
        from digitrec.service.granian_server import serve_granian

        return serve_granian(config)
    if config.http_server == "gunicorn":
        from digitrec.service.prefork import serve_workers

        return serve_workers(config)
    limit_tensorflow_threads(config.tf_threads)
    from digitrec.service.app import create_app

    started = time.perf_counter()
    app = create_app(config)
    server = None
    releaser = None
    try:
        server = make_server(app, config)
        if config.release_library_pages:
            releaser = release_pages_when_loaded(app, config)
        url = config.replace(port=int(server.effective_port)).url
        print_or_detach(  # `digitrec serve | head -1` must not stop the service
            f"digitrec serving on {url} (data in {config.data_dir.resolve()}, ready in "
            f"{time.perf_counter() - started:.1f} s)"
        )
        for line in startup_lines(app.context.access, url):
            print_or_detach(line)

        signals: list[int] = []

        def stop(signum: int, frame: object) -> None:
            signals.append(signum)
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            server.run()  # returns when a signal interrupts it (waitress catches the KeyboardInterrupt)
        except KeyboardInterrupt:
            pass
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        reason = signal.Signals(signals[0]).name if signals else "the server loop ended"
        log.info("shutting down (%s)", reason)
        stopping = time.perf_counter()
    finally:
        if server is not None:
            server.close()
        app.close()
        if releaser is not None:
            # Let it leave TensorFlow before the interpreter shuts down: a daemon thread that returns
            # from native code during shutdown is unwound through C++ frames, and the process aborts.
            releaser.join(timeout=SHUTDOWN_WAIT)
    log.info("stopped in %.2f s", time.perf_counter() - stopping)
    return 0
