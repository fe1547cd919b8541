"""Service settings: one frozen object built from command-line arguments and the environment.

Arguments win over environment variables, which win over defaults, so a container can set everything
with ``DIGITREC_*`` variables while a developer overrides one value on the command line.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from digitrec.errors import ConfigurationError
from digitrec.records.config import require_folder

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_THREADS = 16
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_WAIT_MS = 2.0
DEFAULT_MODEL_POLL_SECONDS = 5.0
DEFAULT_WORKERS = 1
DEFAULT_CORRECTIONS_PER_MINUTE = 30
SERVERS = ("waitress", "gunicorn", "granian")
MODEL_NAMES = ("digits", "fashion")


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """Everything `create_app` and the server need; immutable so threads can share it.

    ``workers`` is the number of serving processes, each with ``threads`` request threads: by default
    granian's master with that many workers (on Windows, waitress in this process).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = Path("data")
    threads: int = DEFAULT_THREADS
    workers: int = DEFAULT_WORKERS
    server: str = "auto"  # "auto": see ``http_server``
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    api_token: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS
    models: tuple[str, ...] = MODEL_NAMES
    lazy_models: tuple[str, ...] = ("fashion",)
    models_dir: Path | None = None
    tf_threads: int = 1
    release_library_pages: bool = True
    keep_upload_files: bool = False  # the image is kept once, in the records store; 1 also writes uploads/
    model_poll_seconds: float = DEFAULT_MODEL_POLL_SECONDS  # look for a newly promoted version; 0 = never
    access_log: bool = True
    corrections_per_minute: int = DEFAULT_CORRECTIONS_PER_MINUTE  # per client and process; 0 = no limit
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        require_folder(Path(self.data_dir), "data dir")
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"port must be between 0 and 65535, not {self.port}")
        if self.threads < 1:
            raise ConfigurationError(f"threads must be at least 1, not {self.threads}")
        if self.workers < 1:
            raise ConfigurationError(f"workers must be at least 1, not {self.workers}")
        if self.server not in ("auto", *SERVERS):
            raise ConfigurationError(f"server must be auto or one of {', '.join(SERVERS)}, not {self.server!r}")
        if self.workers > 1 and sys.platform == "win32":
            raise ConfigurationError("several worker processes need a POSIX system; use --workers 1")
        if self.workers > 1 and self.server == "waitress":
            raise ConfigurationError("waitress serves in one process; use --server granian or gunicorn for workers")
        if self.max_upload_bytes < 1024:
            raise ConfigurationError(f"max upload size must be at least 1024 bytes, not {self.max_upload_bytes}")
        if self.batch_size < 1:
            raise ConfigurationError(f"batch size must be at least 1, not {self.batch_size}")
        if self.tf_threads < 0:
            raise ConfigurationError(f"TensorFlow threads must be 0 (its default) or more, not {self.tf_threads}")
        if self.model_poll_seconds < 0:
            raise ConfigurationError(f"model poll seconds must be 0 (off) or more, not {self.model_poll_seconds}")
        if self.corrections_per_minute < 0:
            raise ConfigurationError(
                f"corrections per minute must be 0 (no limit) or more, not {self.corrections_per_minute}"
            )
        if self.batch_wait_ms < 0:
            raise ConfigurationError(f"batch wait must not be negative, not {self.batch_wait_ms}")
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown or not self.models:
            raise ConfigurationError(f"models must be a non-empty subset of {MODEL_NAMES}, not {self.models}")

    @property
    def fsync_uploads(self) -> bool:
        """Flush each stored PNG to the disk only when the records store does so too.

        With SQLite's default ``synchronous=NORMAL`` a record survives a crash of the process (kill -9)
        but not a power cut; a PNG in the page cache has the same guarantee, so an fsync per upload would
        cost ~1 ms of disk wait for nothing. ``DIGITREC_SQLITE_SYNCHRONOUS=FULL`` turns both on.
        """
        return self.environ.get("DIGITREC_SQLITE_SYNCHRONOUS", "").strip().upper() == "FULL"

    @property
    def http_server(self) -> str:
        """The server that runs: ``server``, or for "auto" granian's master and workers, also for one
        process: measured beside gunicorn and waitress in one run (BENCHMARKS.md "HTTP service"), it
        answered more requests a second with less CPU per request, and its master restarts a worker
        that dies. gunicorn where granian is not installed (it has no wheel for the platform); waitress
        in this process on Windows, where neither runs."""
        if self.server != "auto":
            return self.server
        if sys.platform == "win32":
            return "waitress"
        return "granian" if importlib.util.find_spec("granian") is not None else "gunicorn"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def trained_models_dir(self) -> Path:
        """The writable models folder: ``--models-dir``, else ``<data dir>/trained_models`` (the Docker
        volume). It need not exist: lookups then fall through to the shipped models (``digitrec.model.versions``),
        and promoting or writing a version creates it."""
        return self.models_dir if self.models_dir is not None else self.data_dir / "trained_models"

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/"

    def replace(self, **changes: Any) -> ServiceConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServiceConfig:
        """Read ``DIGITREC_*`` variables; keyword arguments that are not None override them."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {
            "host": env.get("DIGITREC_HOST", DEFAULT_HOST),
            "port": _int(env, "DIGITREC_PORT", DEFAULT_PORT),
            "data_dir": Path(env.get("DIGITREC_DATA_DIR", "data")),
            "threads": _int(env, "DIGITREC_THREADS", DEFAULT_THREADS),
            "workers": _int(env, "DIGITREC_WORKERS", DEFAULT_WORKERS),
            "server": env.get("DIGITREC_SERVER", "auto").strip().lower() or "auto",
            "max_upload_bytes": _int(env, "DIGITREC_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            "max_pixels": _int(env, "DIGITREC_MAX_PIXELS", DEFAULT_MAX_PIXELS),
            "api_token": env.get("DIGITREC_API_TOKEN") or None,
            "batch_size": _int(env, "DIGITREC_BATCH_SIZE", DEFAULT_BATCH_SIZE),
            "batch_wait_ms": _float(env, "DIGITREC_BATCH_WAIT_MS", DEFAULT_BATCH_WAIT_MS),
            "tf_threads": _int(env, "DIGITREC_TF_THREADS", 1),
            "release_library_pages": _bool(env, "DIGITREC_RELEASE_LIBRARY_PAGES", True),
            "keep_upload_files": _bool(env, "DIGITREC_KEEP_UPLOAD_FILES", False),
            "model_poll_seconds": _float(env, "DIGITREC_MODEL_POLL_SECONDS", DEFAULT_MODEL_POLL_SECONDS),
            "access_log": _bool(env, "DIGITREC_ACCESS_LOG", True),
            "corrections_per_minute": _int(env, "DIGITREC_CORRECTIONS_PER_MINUTE", DEFAULT_CORRECTIONS_PER_MINUTE),
        }
        if env.get("DIGITREC_MODELS_DIR"):
            values["models_dir"] = Path(env["DIGITREC_MODELS_DIR"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["environ"] = env
        return cls(**values)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, not {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be 1/true/yes/on or 0/false/no/off, not {env[name]!r}")
