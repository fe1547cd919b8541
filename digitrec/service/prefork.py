"""Several serving processes on one socket: gunicorn's pre-fork master with gthread workers.

One Python process is bound by its GIL (about 580 predictions/s on 2 cores); N worker processes share
one listening socket, and the master restarts any that dies. The master only holds the settings: it
never imports TensorFlow (which starts native threads that do not survive a fork) nor builds the app.
gunicorn calls ``load`` in each worker after the fork, so every worker imports TensorFlow, loads its
models and opens its own stores itself.

Per process: a spool file (``spool.worker-<pid>.sqlite3``; a dead worker's spool is adopted by a live one),
the SQLite writer, the micro-batcher. Shared: the listening socket, the SQLite records file (WAL), the
uploads folder and the Prometheus files in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory per master).

Signals (to the master): TERM = graceful stop (in-flight requests finish, at most ``GRACEFUL_TIMEOUT``
s), INT/QUIT = quick stop, HUP = graceful reload (new workers with freshly imported code, then the old
ones stop once the new ones have loaded their models), TTIN/TTOU = one worker more/less.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from digitrec.runtime.process_exit import print_or_detach
from digitrec.service.access import AccessPolicy, secrets_for, startup_lines
from digitrec.service.config import ServiceConfig
from digitrec.service.metrics import MULTIPROC_ENV, mark_process_dead

log = logging.getLogger(__name__)

GRACEFUL_TIMEOUT = 30  # seconds in-flight requests get to finish at TERM/HUP
WORKER_TIMEOUT = 120  # a worker silent this long (stuck, or still loading on a starved host) is replaced
KEEPALIVE = 60  # seconds an idle keep-alive connection is kept, as waitress's channel_timeout
SHARED_MEMORY_DIR = "/dev/shm"  # gunicorn's advice for the workers' heartbeat files


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def master_access_policy(config: ServiceConfig) -> AccessPolicy:
    """The access policy the master prints from, with the token made before any worker starts. With
    Cassandra the secrets live in the store: the master opens it for this only and closes it again
    before forking (the driver's threads must not be inherited)."""
    from digitrec.records.config import RecordsConfig

    records = RecordsConfig.from_env(config.environ, data_dir=config.data_dir)
    settings = dict(host=config.host, data_dir=config.data_dir, environ=config.environ, api_token=config.api_token)
    if records.engine != "cassandra":
        return AccessPolicy(**settings)
    from digitrec.records.factory import open_primary

    with open_primary(records) as store:
        return AccessPolicy(**settings, secrets_source=secrets_for(store, config.data_dir))


class ReloadWhenReadyArbiter(Arbiter):
    """gunicorn's master, except that after HUP the old workers keep serving until the new ones have
    loaded their models (gunicorn itself stops them at once, and a model load takes seconds)."""

    def manage_workers(self) -> None:
        if len(self.WORKERS) > self.num_workers:
            newest = sorted(self.WORKERS.items(), key=lambda item: item[1].age)[-self.num_workers :]
            if not all(self.app.is_ready(pid) for pid, _ in newest):
                return  # checked again at the next turn of the master's loop (about once a second)
        super().manage_workers()


class WorkerProcesses(BaseApplication):
    """gunicorn's application API: settings from ``ServiceConfig``, the app built in each worker."""

    def __init__(self, config: ServiceConfig, ready_dir: Path) -> None:
        self.service_config = config
        # Made here, before any fork: every worker then reads the one token file (and client salt).
        self.access = master_access_policy(config)
        self.ready_dir = ready_dir  # a worker that has loaded its app leaves a file named by its pid here
        self.started = time.perf_counter()
        super().__init__(prog="digitrec")

    def is_ready(self, pid: int) -> bool:
        return (self.ready_dir / str(pid)).exists()

    def run(self) -> None:
        try:
            ReloadWhenReadyArbiter(self).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr, flush=True)
            sys.exit(1)

    def load_config(self) -> None:
        config = self.service_config
        settings: dict[str, Any] = {
            "bind": [bind_address(config.host, config.port)],
            "workers": config.workers,
            "worker_class": "digitrec.service.gunicorn_errors.JsonErrorThreadWorker",  # gthread, JSON errors
            "threads": config.threads,
            "worker_connections": max(100, config.threads * 16),
            "preload_app": False,  # never build the app (TensorFlow) in the master
            "timeout": WORKER_TIMEOUT,
            "graceful_timeout": GRACEFUL_TIMEOUT,
            "keepalive": KEEPALIVE,
            "proc_name": "digitrec",
            "control_socket_disable": True,
            "errorlog": "-",
            "loglevel": "info",
            "when_ready": self.when_ready,
            "post_fork": post_fork,
            "post_worker_init": post_worker_init,
            "worker_exit": worker_exit,
            "child_exit": child_exit,
        }
        if os.path.isdir(SHARED_MEMORY_DIR):
            # Each worker touches its heartbeat file on every turn of its loop; on a disk file system a
            # journal commit can stall that (and every connection of the worker) for milliseconds.
            settings["worker_tmp_dir"] = SHARED_MEMORY_DIR
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        """Runs in the worker, after the fork: TensorFlow is imported here for the first time."""
        from digitrec.service.runtime import limit_tensorflow_threads

        config = self.service_config
        limit_tensorflow_threads(config.tf_threads)
        from digitrec.service.app import create_app

        return create_app(config)

    def when_ready(self, server: Any) -> None:
        """The master has bound the socket: print the URL (connections wait in the backlog until a
        worker has loaded its models)."""
        config = self.service_config
        port = server.LISTENERS[0].sock.getsockname()[1]
        url = config.replace(port=int(port)).url
        processes = f"{config.workers} worker process" + ("es" if config.workers > 1 else "")
        print_or_detach(
            f"digitrec serving on {url} with {processes} (gunicorn master pid "
            f"{os.getpid()}, data in {config.data_dir.resolve()}, ready in "
            f"{time.perf_counter() - self.started:.1f} s; workers load the models now)"
        )
        for line in startup_lines(self.access, url):
            print_or_detach(line)


def post_fork(server: Any, worker: Any) -> None:
    # prometheus-client picks its value class when it is imported; make sure a worker writes the
    # shared files even if something imported it in the master before the variable was set.
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()


def post_worker_init(worker: Any) -> None:
    from digitrec.service.access_log import with_access_log
    from digitrec.service.runtime import release_pages_when_loaded

    app = worker.wsgi
    config = app.config
    # The access log is the middleware waitress mode uses, writing to the stderr the worker inherited;
    # gunicorn's own access log would open /dev/stderr a second time (see access_log.stderr_writer).
    worker.digitrec_app = app
    worker.wsgi = with_access_log(app, config)
    (worker.app.ready_dir / str(os.getpid())).touch()
    if config.release_library_pages:
        worker.digitrec_releaser = release_pages_when_loaded(app, config)
    worker.log.info("worker %d ready: models %s", os.getpid(), app.context.models.status())


def worker_exit(server: Any, worker: Any) -> None:
    """In the worker, after its last request: stop the batchers, drain and close the stores."""
    app = getattr(worker, "digitrec_app", None)
    if app is not None and hasattr(app, "close"):
        app.close()
    releaser: threading.Thread | None = getattr(worker, "digitrec_releaser", None)
    if releaser is not None:  # leave TensorFlow before the interpreter shuts down (see server.serve)
        releaser.join(timeout=30)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, when a worker exited (or was killed): drop its live-only gauges."""
    mark_process_dead(worker.pid)
    (server.app.ready_dir / str(worker.pid)).unlink(missing_ok=True)


def serve_workers(config: ServiceConfig) -> int:
    """Run the master until TERM/INT; returns its exit status."""
    master = os.getpid()
    metrics_dir = tempfile.mkdtemp(prefix="digitrec-metrics-")
    ready_dir = tempfile.mkdtemp(prefix="digitrec-ready-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # before any worker imports prometheus_client
    try:
        WorkerProcesses(config, Path(ready_dir)).run()
    except SystemExit as stop:  # gunicorn's master and its workers leave through sys.exit
        code = stop.code
        if os.getpid() != master:
            # A worker, after gunicorn's worker_exit hook closed the app (records are committed). Skip
            # the interpreter's teardown: unloading TensorFlow's modules takes 10-15 s on a busy host.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else (0 if code is None else 1))
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        if os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            shutil.rmtree(ready_dir, ignore_errors=True)
            os.environ.pop(MULTIPROC_ENV, None)
    return 0
