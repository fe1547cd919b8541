"""Container entrypoint: prepare the data volume, wait for Cassandra, create the schema, then serve.

Why a Python entrypoint: it is testable outside a container, and as PID 1 it can turn SIGTERM
(`docker stop`) into the same clean shutdown the server does on Ctrl-C; a plain Python PID 1 would
ignore SIGTERM and be killed after the grace period.

Order of work for `serve` (the default command):
1. make sure DIGITREC_DATA_DIR (/data) holds trained_models/ and uploads/ and is writable;
2. copy each shipped model into trained_models/<name> unless that directory exists (a model the
   operator dropped in is never overwritten); the copy goes to a temporary directory first and is
   renamed into place, so a crash mid-copy never leaves half a model;
3. with CASSANDRA_CONTACT_POINTS set, wait for a contact point with bounded back-off and run
   `digitrec records init-db` (idempotent); if Cassandra is still unreachable when
   DIGITREC_CASSANDRA_WAIT_SECONDS runs out, log it and serve anyway: records go to the spool;
4. run `digitrec serve --host DIGITREC_HOST --port DIGITREC_PORT [--workers DIGITREC_WORKERS]` in this
   process (it becomes granian's master, with one worker or DIGITREC_WORKERS; docs/scaling.md).
Any other command (`bash`, `digitrec records list`, ...) runs after step 1-2, without waiting.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

LOG = logging.getLogger("digitrec.entrypoint")

DEFAULT_DATA_DIR = "/data"
DEFAULT_WAIT_SECONDS = 120.0
DEFAULT_CASSANDRA_PORT = 9042
PARTIAL_PREFIX = ".partial-"
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 8.0


class StartupError(RuntimeError):
    """The container cannot start (e.g. the data volume is not writable); the message says how to fix it."""


# ---- data volume -------------------------------------------------------------------------------


def prepare_data_dir(data_dir: Path) -> None:
    """Create trained_models/ and uploads/ and prove the volume is writable before anything else runs."""
    try:
        for sub in ("trained_models", "uploads"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True)
        probe = data_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"data directory {data_dir} is not writable by uid {os.getuid()} ({exc}); "
            f"for a bind mount run: chown -R {os.getuid()}:{os.getgid()} <host dir>"
        ) from exc


def seed_models(shipped_dir: Path, models_dir: Path) -> list[str]:
    """Copy each shipped model dir into models_dir/<name> if absent; return the names copied.

    An existing target (file, directory or symlink) is left untouched: that is how an operator's
    retrained checkpoint survives upgrades. Leftovers of a copy interrupted by a crash are removed; a
    copy that fails (full volume) is logged and skipped, and the service then loads the shipped copy.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    for leftover in models_dir.glob(f"{PARTIAL_PREFIX}*"):
        LOG.warning("removing %s left by an interrupted model copy", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    if not shipped_dir.is_dir():
        LOG.warning("no shipped models at %s; nothing to seed", shipped_dir)
        return []
    copied = []
    for source in sorted(p for p in shipped_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_model_dir(source):
            LOG.info("skipping %s: not a complete model (no model.json and checkpoint)", source)
            continue
        target = models_dir / source.name
        if target.exists() or target.is_symlink():
            LOG.info("model %s: keeping %s", source.name, target)
            continue
        partial = models_dir / f"{PARTIAL_PREFIX}{source.name}-{os.getpid()}"
        try:
            shutil.copytree(source, partial)
            os.rename(partial, target)  # atomic on one filesystem: the model appears whole or not at all
        except (OSError, shutil.Error) as exc:
            # e.g. a full volume: serve with the shipped copy rather than refuse to start
            shutil.rmtree(partial, ignore_errors=True)
            LOG.error("model %s: could not copy to %s (%s); the shipped copy is used", source.name, target, exc)
            continue
        LOG.info("model %s: seeded %s from %s", source.name, target, source)
        copied.append(source.name)
    return copied


def is_model_dir(path: Path) -> bool:
    """A checkpoint directory as the recognizer loads it (a folder still being trained is not one)."""
    from digitrec.model.checkpoints import is_model_dir as complete

    return complete(path)


def shipped_models_dir() -> Path:
    """Where the installed package keeps its models (imported late: the package may live on PYTHONPATH)."""
    from digitrec.model.checkpoints import shipped_models_dir as locate

    return Path(locate())


# ---- Cassandra ---------------------------------------------------------------------------------


def contact_points(environ: Mapping[str, str]) -> list[tuple[str, int]]:
    """(host, port) pairs from CASSANDRA_CONTACT_POINTS ("a,b" or "a:9042,b") and CASSANDRA_PORT."""
    default_port = int(environ.get("CASSANDRA_PORT") or DEFAULT_CASSANDRA_PORT)
    points = []
    for item in (environ.get("CASSANDRA_CONTACT_POINTS") or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if sep and host and port.isdigit() and ":" not in host:
            points.append((host, int(port)))
        else:
            points.append((item.strip("[]"), default_port))
    return points


def tcp_reachable(points: Sequence[tuple[str, int]], timeout: float = 2.0) -> tuple[str, int] | None:
    """The first contact point accepting a TCP connection, or None."""
    for host, port in points:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return host, port
        except OSError as exc:
            LOG.debug("cassandra %s:%s not reachable: %s", host, port, exc)
    return None


def retry_until(
    attempt: Callable[[float], bool],
    deadline: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Call attempt(seconds_left), pausing 0.5 s, 1 s, ... up to 8 s, until it succeeds or time runs out."""
    delay = FIRST_DELAY_SECONDS
    tries = 0
    while True:
        tries += 1
        if attempt(max(deadline - clock(), 0.0)):
            return True
        left = deadline - clock()
        if left <= 0:
            LOG.warning("%s: gave up after %d attempts", what, tries)
            return False
        pause = min(delay, left)
        LOG.info("%s: attempt %d failed, retrying in %.1f s (%.0f s left)", what, tries, pause, left)
        sleep(pause)
        delay = min(delay * 2, MAX_DELAY_SECONDS)


def digitrec_command(*args: str) -> list[str]:
    """`python -m digitrec ...` with this interpreter: works installed and from a checkout."""
    return [sys.executable, "-m", "digitrec", *args]


def run_init_db(timeout: float) -> bool:
    """Run `digitrec records init-db` once; True when it created or found the schema."""
    try:
        result = subprocess.run(
            digitrec_command("records", "init-db"),
            capture_output=True,
            text=True,
            timeout=max(timeout, 10.0),
            check=False,
        )
    except subprocess.TimeoutExpired:
        LOG.warning("records init-db did not finish within %.0f s", max(timeout, 10.0))
        return False
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 0:
        LOG.info("records init-db: %s", output.splitlines()[-1] if output else "ok")
        return True
    LOG.warning("records init-db exited %d: %s", result.returncode, output[-2000:])
    return False


def prepare_records_store(environ: Mapping[str, str], wait_seconds: float) -> bool:
    """Create the records schema. True when the primary store is ready; False means "serving from the spool".

    SQLite (no contact points) must work: a failure there is a broken volume, so it stops the start.
    """
    points = contact_points(environ)
    if not points:
        if not run_init_db(60.0):
            raise StartupError("could not create the SQLite records store (see the init-db message above)")
        return True
    where = ", ".join(f"{h}:{p}" for h, p in points)
    deadline = time.monotonic() + wait_seconds
    LOG.info("waiting up to %.0f s for Cassandra at %s", wait_seconds, where)
    ready = retry_until(lambda left: tcp_reachable(points) is not None, deadline, f"cassandra {where}")
    if ready:
        ready = retry_until(run_init_db, deadline, "records init-db")
    if not ready:
        LOG.warning(
            "Cassandra at %s is unreachable after %.0f s: serving anyway; every record is kept in the "
            "spool under %s and written to Cassandra once it answers (see /readyz)",
            where,
            wait_seconds,
            environ.get("DIGITREC_DATA_DIR", DEFAULT_DATA_DIR),
        )
    return ready


# ---- serving -----------------------------------------------------------------------------------


_stop_signals: list[int] = []


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM behaves like Ctrl-C: the server stops accepting, finishes what it can, and returns."""
    _stop_signals.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def serve_arguments(environ: Mapping[str, str], extra_args: Sequence[str]) -> list[str]:
    """`digitrec serve` arguments: address from the environment, and DIGITREC_WORKERS serving processes
    (this process becomes granian's master, still PID 1's child of `init`, and TERM from `docker stop`
    is its graceful stop)."""
    host = environ.get("DIGITREC_HOST", "0.0.0.0")
    port = environ.get("DIGITREC_PORT", "5000")
    argv = ["serve", "--host", host, "--port", port]
    workers = (environ.get("DIGITREC_WORKERS") or "").strip()
    if workers:
        argv += ["--workers", workers]
    return [*argv, *extra_args]


def serve(environ: Mapping[str, str], extra_args: Sequence[str]) -> int:
    """Run `digitrec serve` in this process (so PID 1 is the server and receives the signals)."""
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    from digitrec.cli import main as digitrec_main

    argv = serve_arguments(environ, extra_args)
    LOG.info("starting: digitrec %s", " ".join(argv))
    try:
        code = digitrec_main(argv)
    except KeyboardInterrupt:
        code = 0
    if _stop_signals:
        code = 0  # a stop asked for before the server took over the signals is a clean exit, not 130
    LOG.info("server stopped (exit code %d)", code)
    return code


def wait_seconds_from(environ: Mapping[str, str]) -> float:
    raw = environ.get("DIGITREC_CASSANDRA_WAIT_SECONDS", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_WAIT_SECONDS
    except ValueError as exc:
        raise StartupError(f"DIGITREC_CASSANDRA_WAIT_SECONDS must be a number, not {raw!r}") from exc
    if value < 0:
        raise StartupError(f"DIGITREC_CASSANDRA_WAIT_SECONDS must be >= 0, not {raw!r}")
    return value


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["serve"]
    env = os.environ if environ is None else environ
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        data_dir = Path(env.get("DIGITREC_DATA_DIR") or DEFAULT_DATA_DIR)
        os.environ.setdefault("DIGITREC_DATA_DIR", str(data_dir))
        prepare_data_dir(data_dir)
        seed_models(shipped_models_dir(), data_dir / "trained_models")
        if args[0] != "serve":
            LOG.info("running: %s", " ".join(args))
            try:
                os.execvp(args[0], args)
            except OSError as exc:
                raise StartupError(f"cannot run {args[0]!r}: {exc}") from exc
        wait = wait_seconds_from(env)
        prepare_records_store(env, wait)
    except StartupError as exc:
        LOG.error("cannot start: %s", exc)
        return 1
    return serve(env, args[1:])


if __name__ == "__main__":
    from digitrec.runtime.process_exit import exit_process

    exit_process(main())  # after a served SIGTERM: seconds faster than the interpreter's own teardown
