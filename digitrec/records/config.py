"""Records settings, read from the environment (or arguments) and validated with messages naming the variable.

Nothing here imports cassandra-driver: a newcomer with only SQLite never pays for it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from digitrec.errors import ConfigurationError

DEFAULT_KEYSPACE = "digitrecognition"
DEFAULT_TABLE = "dr_request_log"
DEFAULT_PORT = 9042
DEFAULT_CONSISTENCY = "LOCAL_QUORUM"
CONSISTENCY_LEVELS = (
    "ANY",
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
)
SQLITE_SYNC_MODES = ("NORMAL", "FULL")

# CQL identifiers are interpolated into DDL, so only plain unquoted names are accepted.
_CQL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
_DC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclasses.dataclass(frozen=True)
class Replication:
    """Keyspace replication, written as ``SimpleStrategy:1`` or ``NetworkTopologyStrategy:dc1=3,dc2=3``."""

    strategy: str
    factors: tuple[tuple[str, int], ...]  # (("replication_factor", 1),) or ((dc, rf), ...)

    @classmethod
    def parse(cls, text: str, variable: str = "CASSANDRA_REPLICATION") -> Replication:
        strategy, sep, rest = text.strip().partition(":")
        name = strategy.strip().lower()
        if not sep or not rest.strip():
            raise ConfigurationError(
                f"{variable}={text!r}: expected 'SimpleStrategy:<rf>' or "
                "'NetworkTopologyStrategy:<dc>=<rf>[,<dc>=<rf>...]'"
            )
        if name == "simplestrategy":
            return cls("SimpleStrategy", (("replication_factor", _positive_int(rest, variable)),))
        if name == "networktopologystrategy":
            factors = []
            for part in rest.split(","):
                dc, eq, rf = part.partition("=")
                dc = dc.strip()
                if not eq or not _DC_NAME.match(dc):
                    raise ConfigurationError(f"{variable}: bad data centre entry {part.strip()!r}; use dc1=3")
                factors.append((dc, _positive_int(rf, variable)))
            if len({dc for dc, _ in factors}) != len(factors):
                raise ConfigurationError(f"{variable}: a data centre is listed twice in {text!r}")
            return cls("NetworkTopologyStrategy", tuple(factors))
        raise ConfigurationError(
            f"{variable}: unknown strategy {strategy.strip()!r}; use SimpleStrategy or NetworkTopologyStrategy"
        )

    def cql_map(self) -> str:
        """The CQL map literal for ``CREATE KEYSPACE ... WITH replication = {...}``."""
        items = [f"'class': '{self.strategy}'"] + [f"'{key}': {value}" for key, value in self.factors]
        return "{" + ", ".join(items) + "}"

    def __str__(self) -> str:
        if self.strategy == "SimpleStrategy":
            return f"SimpleStrategy:{self.factors[0][1]}"
        return "NetworkTopologyStrategy:" + ",".join(f"{dc}={rf}" for dc, rf in self.factors)


def require_folder(path: Path, what: str) -> None:
    """Refuse ``path`` when it, or the nearest part of it that exists, is not a folder: creating the
    folder later would fail with an OS error that does not say which setting is wrong."""
    for existing in (path, *path.parents):
        if existing.exists():
            if existing.is_dir():
                return
            inside = "" if existing == path else f" ({existing} is a file)"
            raise ConfigurationError(f"{what} {path} is {'a file, ' if not inside else ''}not a folder{inside}")


@dataclasses.dataclass(frozen=True)
class RecordsConfig:
    """Where records go and how. Empty ``contact_points`` means the embedded SQLite store."""

    data_dir: Path = Path("data")
    contact_points: tuple[str, ...] = ()
    port: int = DEFAULT_PORT
    keyspace: str = DEFAULT_KEYSPACE
    table: str = DEFAULT_TABLE
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    local_dc: str | None = None
    replication: Replication = Replication("SimpleStrategy", (("replication_factor", 1),))
    consistency: str = DEFAULT_CONSISTENCY
    ttl_seconds: int = 0  # 0 = records never expire
    retention_days: int = 0  # DIGITREC_RETENTION_DAYS: records older are purged (0 = kept); also the default TTL
    ssl: bool = False
    ssl_ca: Path | None = None
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    ssl_verify_hostname: bool = True
    protocol_version: int = 4  # 4: Cassandra 2.2 to 5.0, no version negotiation noise; 5 for Cassandra >= 4.0
    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    write_concurrency: int = 64
    sqlite_synchronous: str = "NORMAL"
    write_timeout: float = 10.0
    spool: bool = True
    spool_retry_min: float = 0.5
    spool_retry_max: float = 30.0
    spool_file: Path | None = None  # None = <data dir>/spool.sqlite3; a relative path is under the data dir

    def __post_init__(self) -> None:
        require_folder(Path(self.data_dir), "data dir")
        for name in ("keyspace", "table"):
            value = getattr(self, name)
            if not _CQL_NAME.match(value):
                raise ConfigurationError(
                    f"{name} {value!r} is not a plain CQL name (letter, then letters/digits/_; max 48)"
                )
        if len(self.table) > 42:
            raise ConfigurationError(f"table {self.table!r} is too long: at most 42 characters (suffixes are added)")
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"port {self.port} is out of range 1-65535")
        if self.consistency not in CONSISTENCY_LEVELS:
            raise ConfigurationError(f"consistency {self.consistency!r}: use one of {', '.join(CONSISTENCY_LEVELS)}")
        if self.sqlite_synchronous not in SQLITE_SYNC_MODES:
            raise ConfigurationError(f"SQLite synchronous mode must be NORMAL or FULL, not {self.sqlite_synchronous!r}")
        if (self.username is None) != (self.password is None):
            raise ConfigurationError("CASSANDRA_USERNAME and CASSANDRA_PASSWORD must be set together")
        if (self.ssl_cert is None) != (self.ssl_key is None):
            raise ConfigurationError("CASSANDRA_SSL_CERT and CASSANDRA_SSL_KEY must be set together")
        for label, path in (
            ("CASSANDRA_SSL_CA", self.ssl_ca),
            ("CASSANDRA_SSL_CERT", self.ssl_cert),
            ("CASSANDRA_SSL_KEY", self.ssl_key),
        ):
            if path is not None and not Path(path).is_file():
                raise ConfigurationError(f"{label}: no such file {str(path)!r}")
        if self.protocol_version not in (4, 5):
            raise ConfigurationError(f"CASSANDRA_PROTOCOL_VERSION must be 4 or 5, not {self.protocol_version}")
        if self.ttl_seconds < 0:
            raise ConfigurationError("CASSANDRA_TTL must be 0 (no expiry) or a positive number of seconds")
        if self.spool_retry_min <= 0 or self.spool_retry_max < self.spool_retry_min:
            raise ConfigurationError("spool retry delays must satisfy 0 < min <= max")

    @property
    def engine(self) -> str:
        return "cassandra" if self.contact_points else "sqlite"

    @property
    def sqlite_path(self) -> Path:
        return Path(self.data_dir) / "records.sqlite3"

    @property
    def spool_path(self) -> Path:
        """This process's spool file. Replicas sharing a data volume need one each (DIGITREC_SPOOL_PATH)."""
        return Path(self.data_dir) / (self.spool_file or "spool.sqlite3")

    @property
    def uses_tls(self) -> bool:
        return self.ssl or self.ssl_ca is not None or self.ssl_cert is not None

    def describe(self) -> str:
        """One line for logs and the CLI; never includes the password."""
        if self.engine == "sqlite":
            return f"sqlite {self.sqlite_path}"
        auth = f" as {self.username}" if self.username else ""
        tls = " tls" if self.uses_tls else ""
        return (
            f"cassandra {','.join(self.contact_points)}:{self.port}{auth}{tls} "
            f"{self.keyspace}.{self.table} ({self.replication}, {self.consistency})"
        )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, data_dir: Path | str | None = None, **overrides: object
    ) -> RecordsConfig:
        """Build from ``environ`` (default ``os.environ``); ``data_dir`` and ``overrides`` win over it."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        chosen_dir = data_dir if data_dir is not None else env.get("DIGITREC_DATA_DIR") or "data"
        values["data_dir"] = Path(chosen_dir)
        points = env.get("CASSANDRA_CONTACT_POINTS", "").strip()
        if points:
            parsed = tuple(p.strip() for p in points.split(","))
            if any(not p or " " in p for p in parsed):
                raise ConfigurationError(
                    f"CASSANDRA_CONTACT_POINTS={points!r}: expected comma-separated hosts, e.g. 10.0.0.5,10.0.0.6"
                )
            values["contact_points"] = parsed
        _maybe(values, "port", env, "CASSANDRA_PORT", _int_in(1, 65535))
        _maybe(values, "keyspace", env, "CASSANDRA_KEYSPACE", str.strip)
        _maybe(values, "table", env, "CASSANDRA_TABLE", str.strip)
        _maybe(values, "username", env, "CASSANDRA_USERNAME", str)
        _maybe(values, "password", env, "CASSANDRA_PASSWORD", str)
        _maybe(values, "local_dc", env, "CASSANDRA_LOCAL_DC", str.strip)
        _maybe(values, "replication", env, "CASSANDRA_REPLICATION", Replication.parse)
        _maybe(values, "consistency", env, "CASSANDRA_CONSISTENCY", lambda v: v.strip().upper())
        _maybe(values, "retention_days", env, "DIGITREC_RETENTION_DAYS", _int_in(0, 7300))
        if values.get("retention_days"):  # new rows expire by themselves after the retention period
            values["ttl_seconds"] = values["retention_days"] * 86400
        _maybe(values, "ttl_seconds", env, "CASSANDRA_TTL", _int_in(0, 630720000))
        _maybe(values, "ssl", env, "CASSANDRA_SSL", _boolean)
        _maybe(values, "ssl_ca", env, "CASSANDRA_SSL_CA", Path)
        _maybe(values, "ssl_cert", env, "CASSANDRA_SSL_CERT", Path)
        _maybe(values, "ssl_key", env, "CASSANDRA_SSL_KEY", Path)
        _maybe(values, "ssl_verify_hostname", env, "CASSANDRA_SSL_VERIFY_HOSTNAME", _boolean)
        _maybe(values, "protocol_version", env, "CASSANDRA_PROTOCOL_VERSION", _int_in(4, 5))
        _maybe(values, "connect_timeout", env, "CASSANDRA_CONNECT_TIMEOUT", _positive_float)
        _maybe(values, "request_timeout", env, "CASSANDRA_REQUEST_TIMEOUT", _positive_float)
        _maybe(values, "write_concurrency", env, "CASSANDRA_WRITE_CONCURRENCY", _int_in(1, 10000))
        _maybe(values, "sqlite_synchronous", env, "DIGITREC_SQLITE_SYNCHRONOUS", lambda v: v.strip().upper())
        _maybe(values, "write_timeout", env, "DIGITREC_RECORDS_WRITE_TIMEOUT", _positive_float)
        _maybe(values, "spool", env, "DIGITREC_SPOOL", _boolean)
        _maybe(values, "spool_retry_min", env, "DIGITREC_SPOOL_RETRY_MIN", _positive_float)
        _maybe(values, "spool_retry_max", env, "DIGITREC_SPOOL_RETRY_MAX", _positive_float)
        _maybe(values, "spool_file", env, "DIGITREC_SPOOL_PATH", lambda v: Path(v.strip()))
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _maybe(values: dict, field: str, env: Mapping[str, str], variable: str, parse) -> None:
    raw = env.get(variable)
    if raw is None or (raw.strip() == "" and field not in ("password",)):
        return
    try:
        values[field] = parse(raw)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{variable}={raw!r}: {exc}") from None


def _positive_int(text: str, variable: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigurationError(f"{variable}: {text.strip()!r} is not a whole number") from None
    if value < 1:
        raise ConfigurationError(f"{variable}: replication factor must be at least 1, not {value}")
    return value


def _int_in(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError("not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("not a number") from None
    if not value > 0:
        raise ValueError("must be a positive number of seconds")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected one of 1/0, true/false, yes/no, on/off")
