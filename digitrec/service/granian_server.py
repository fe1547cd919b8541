"""Serve with granian: HTTP parsed and answered in Rust, the WSGI app called in Python worker threads.

granian's master process binds the socket and forks ``workers`` worker processes (one with
``--workers 1``); it never imports TensorFlow. Each worker calls ``worker_app``, which builds the app
(TensorFlow, models, stores) from the settings the master left in ``DIGITREC_SERVE_CONFIG``.

What ``prefork`` gives gunicorn workers, here: a worker that dies is started again
(``respawn_failed_workers``); ``/metrics`` adds up every worker's values (prometheus-client's
multiprocess files in a fresh directory per master, a dead worker's live-only gauges dropped at the
next scrape); HUP starts new workers one at a time and stops each old one only once the new one has
loaded its models (granian itself stops it after a fixed delay, and a model load takes seconds, more
on a busy host); TERM and INT stop the workers, each after its in-flight requests.
"""

from __future__ import annotations

import base64
import logging
import multiprocessing.util
import os
import pickle
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from digitrec.runtime.process_exit import print_or_detach
from digitrec.service.access import AccessPolicy, startup_lines
from digitrec.service.config import ServiceConfig
from digitrec.service.metrics import MULTIPROC_ENV, mark_process_dead

log = logging.getLogger(__name__)

CONFIG_ENV = "DIGITREC_SERVE_CONFIG"
MASTER_ENV = "DIGITREC_MASTER_PID"
READY_ENV = "DIGITREC_READY_DIR"  # a worker that has built its app leaves a file named by its pid here
GRACEFUL_TIMEOUT = 30  # seconds a stopping worker gets to finish its requests before it is killed
WORKER_APP = "digitrec.service.granian_server:worker_app"
# granian logs to stdout by default; stdout carries only the address lines (`digitrec serve | head -1`)
LOG_TO_STDERR = {
    "handlers": {
        "console": {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
    }
}
# granian warns at every start when a WSGI worker may run more Python threads than 2 per core. Ours
# are meant to: a request thread mostly waits (for the micro-batcher's shared model call, the store's
# group commit, the client), so the warning would only alarm operators.
THREADS_WARNING = "Python threads, which seems quite high"
LOAD_TIMEOUT = 300  # seconds a new worker gets at HUP to load its models before the old one stops anyway


def worker_app() -> Any:
    """granian's factory, run in each worker after the fork: the WSGI app, models loaded and warm."""
    from digitrec.service.runtime import limit_tensorflow_threads, release_pages_when_loaded

    # Until granian installs its own handlers, after this returns, TERM and INT would run the master's
    # handlers copied at the fork, which only set a flag here: a stop during the seconds of loading
    # would be lost and the master would wait GRACEFUL_TIMEOUT to kill this worker. Nothing is
    # served yet, so the default action (exit at once) is the right one.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    config: ServiceConfig = pickle.loads(base64.b64decode(os.environ[CONFIG_ENV]))
    stop_with_master()
    # prometheus-client picked its value class when the master imported it, before MULTIPROC_ENV was
    # set: pick again, so this worker writes the shared files.
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()
    limit_tensorflow_threads(config.tf_threads)
    from digitrec.service.app import create_app

    app = create_app(config)
    releaser = release_pages_when_loaded(app, config) if config.release_library_pages else None

    def close() -> None:  # after the last request: stop the batchers, drain and close the stores
        app.close()
        if releaser is not None:
            releaser.join(timeout=30)

    # The worker is a multiprocessing child: it ends in os._exit once granian's loop returns, after
    # multiprocessing's own exit handlers (atexit handlers never run there).
    multiprocessing.util.Finalize(None, close, exitpriority=10)
    ready_dir = os.environ.get(READY_ENV)
    if ready_dir:
        (Path(ready_dir) / str(os.getpid())).touch()
    log.info("worker %d ready: models %s", os.getpid(), app.context.models.status())
    from digitrec.service.access_log import with_access_log

    return with_access_log(app, config, at_end=True)  # one write per line to the inherited stderr


def stop_with_master() -> None:
    """Have the kernel send this worker SIGTERM when its master dies, even by SIGKILL (Linux): an
    orphaned worker would go on answering on the shared socket with nobody to stop or replace it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    master = int(os.environ.get(MASTER_ENV) or os.getppid())
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != master:  # the master died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=exit_when_orphaned, args=(master,), name="orphan-watch", daemon=True).start()


def exit_when_orphaned(master: int) -> None:
    """The backstop of the parent-death signal: a TERM that reaches the worker while granian is still
    installing its handlers can be lost (an orphan was seen waiting on its shutdown event for 50
    minutes). Once the master is gone, the worker gets GRACEFUL_TIMEOUT seconds to stop on its own,
    then leaves at once; every answered record is already durable."""
    while os.getppid() == master:
        time.sleep(1.0)
    time.sleep(GRACEFUL_TIMEOUT)
    log.error("worker %d outlived its master by %d s; exiting", os.getpid(), GRACEFUL_TIMEOUT)
    logging.shutdown()
    os._exit(1)


def reload_when_ready_server(ready_dir: Path) -> type:
    """granian's process manager, with three changes that keep the master up:

    * at HUP a worker keeps serving until its replacement has loaded its models, and stays when the
      replacement dies or never gets ready (granian stops it after a fixed delay);
    * granian's crash-loop guard stops the master when a worker exits within 5.5 s of its start. Here
      it applies only to a worker that dies before its app is ready (a boot failure, such as a bad
      setting, that a restart would repeat): a worker that has served, or a replacement the master is
      still waiting for at HUP, is started again or handled here, whatever its age;
    * a worker found dead is only replaced while it is still the one serving its slot (a reload may
      have replaced it meanwhile), and its ready file and live-only gauges go with it: with pids
      reused (pid_max is 32768 on many hosts) a new worker must not inherit them."""
    from granian.server import MPServer

    def is_ready(worker: Any) -> bool:
        return (ready_dir / str(worker._id())).exists()

    class StartTimes(dict):
        """granian's ``respawned_wrks`` (slot -> when its worker was started), read by the crash-loop
        guard: a slot whose worker got ready reads as started long ago."""

        def __init__(self, server: Any) -> None:
            super().__init__()
            self.server = server

        def get(self, idx: int, default: Any = None) -> Any:
            workers = self.server.wrks
            if idx < len(workers) and is_ready(workers[idx]):
                return default
            return super().get(idx, default)

    class ReloadWhenReady(MPServer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.respawned_wrks = StartTimes(self)

        def _init_shared_socket(self) -> None:
            """One listening socket, bound and listening in the master and inherited by every worker
            (what granian does on systems other than Linux). On Linux granian has each worker bind
            its own socket with SO_REUSEPORT instead: connections are then refused while no worker is
            up (at start, after a crash of the only worker), and those queued at a worker that stops
            or dies are reset. With one socket they wait in its backlog for any worker."""
            from granian.net import SocketSpec

            self._ssp = None
            self._shd = SocketSpec(self.bind_addr, self.bind_port, self.backlog).build()
            self._sfd = self._shd.get_fd()
            self._sso = socket.socket(fileno=self._sfd)
            self._sso.set_inheritable(True)
            self._sso.listen(self.backlog)  # granian's workers listen on it too; the master does at once

        def _respawn_workers(self, workers, spawn_target, target_loader, delay: float = 0):  # noqa: ANN001
            if not delay:  # crashed workers: nothing to keep serving, start the new ones now
                dead = [idx for idx in dict.fromkeys(workers) if not self.wrks[idx].is_alive()]
                for idx in dead:
                    forget_worker(ready_dir, self.wrks[idx]._id())
                return super()._respawn_workers(dead, spawn_target, target_loader, delay)
            for idx in workers:
                self.respawned_wrks[idx] = time.monotonic()
                new = self._spawn_worker(idx=idx, target=spawn_target, callback_loader=target_loader)
                new.interrupt_by_parent = True  # until ready: its exit is ours to handle, not a crash loop
                new.start()
                deadline = time.monotonic() + LOAD_TIMEOUT
                while not is_ready(new) and new.is_alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not is_ready(new) or not new.is_alive():
                    log.error(
                        "the new worker-%d (pid %s) did not get ready; the old one keeps serving", idx + 1, new._id()
                    )
                    stop_worker(new, self.workers_kill_timeout)
                    forget_worker(ready_dir, new._id())
                    continue
                new.interrupt_by_parent = False  # from now on a crash is respawned as usual
                old = self.wrks[idx]
                self.wrks[idx] = new
                stop_worker(old, self.workers_kill_timeout)
                forget_worker(ready_dir, old._id())
            self._metrics.incr_spawn(len(workers))

    return ReloadWhenReady


def forget_worker(ready_dir: Path, pid: int | None) -> None:
    """A worker that exited: drop its ready file and its live-only gauges (what gunicorn's ``child_exit``
    does in ``prefork``)."""
    if pid is None:
        return
    (ready_dir / str(pid)).unlink(missing_ok=True)
    mark_process_dead(pid)


def stop_worker(worker: Any, timeout: float) -> None:
    """TERM, then KILL after ``timeout`` seconds (granian's worker objects)."""
    worker.terminate()
    worker.join(timeout)
    if worker.is_alive():
        worker.kill()
        worker.join()


def free_port(host: str) -> int:
    """A port the kernel says is free now (granian needs a number; ``--port 0`` means any free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def serve_granian(config: ServiceConfig, app_factory: str = WORKER_APP) -> int:
    """Run granian's master until TERM/INT; returns its exit status. ``app_factory``: what each worker
    calls for its WSGI app ("module:function"; a test gives a trivial one)."""
    from granian.constants import HTTPModes, Interfaces

    if config.port == 0:
        config = config.replace(port=free_port(config.host))
    metrics_dir = tempfile.mkdtemp(prefix="digitrec-metrics-")
    ready_dir = Path(tempfile.mkdtemp(prefix="digitrec-ready-"))
    os.environ[MULTIPROC_ENV] = metrics_dir  # before any worker imports prometheus_client
    os.environ[READY_ENV] = str(ready_dir)
    os.environ[MASTER_ENV] = str(os.getpid())
    os.environ[CONFIG_ENV] = base64.b64encode(pickle.dumps(config)).decode("ascii")
    started = time.perf_counter()
    # Made here, before any fork: every worker then reads the one token file (and client salt).
    access = AccessPolicy(
        host=config.host, data_dir=config.data_dir, environ=config.environ, api_token=config.api_token
    )
    server = reload_when_ready_server(ready_dir)(
        app_factory,
        address=config.host,
        port=config.port,
        interface=Interfaces.WSGI,
        workers=config.workers,
        blocking_threads=config.threads,
        http=HTTPModes.http1,
        websockets=False,
        backlog=max(1024, config.threads * 16),
        factory=True,
        respawn_failed_workers=True,
        respawn_interval=1.0,  # at HUP: see reload_when_ready_server
        workers_kill_timeout=GRACEFUL_TIMEOUT,
        log_level="info",  # start, workers spawned and stopped, shutdown: as gunicorn logs them
        log_dictconfig=LOG_TO_STDERR,
    )
    processes = f"{config.workers} worker process" + ("es" if config.workers > 1 else "")

    @server.on_startup
    def print_address() -> None:
        """Once the socket listens (connections then wait in its backlog), before the workers start."""
        print_or_detach(  # `digitrec serve | head -1` must not stop the service
            f"digitrec serving on {config.url} with {processes} (granian master pid {os.getpid()}, data in "
            f"{config.data_dir.resolve()}, ready in {time.perf_counter() - started:.1f} s; workers load the "
            "models now)"
        )
        for line in startup_lines(access, config.url):
            print_or_detach(line)

    logging.getLogger("_granian").addFilter(lambda record: THREADS_WARNING not in record.getMessage())
    code = 0
    try:
        server.serve()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(ready_dir, ignore_errors=True)
        os.environ.pop(MULTIPROC_ENV, None)
        os.environ.pop(READY_ENV, None)
        os.environ.pop(MASTER_ENV, None)
        sys.stdout.flush()
    log.info("stopped (exit code %d)", code)
    return code
