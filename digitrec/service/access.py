"""Who may do what: roles from tokens, the rule by bind address, and the token kept in the data volume.

A service bound to a loopback address with no token configured is "open": whoever can reach it is the
person at the machine, and every request may do everything (the README's first steps). Bound to any
other address, or with a token configured, it is "protected": records, images, previews, the dashboard,
other people's corrections and model changes need a token. The rule follows the bound address, never
where a request comes from: behind a proxy on the same host every request looks local.

Roles, each allowed what the one before it is, and more:
  * ``anonymous`` predict (unless DIGITREC_PREDICT_TOKEN is set), correct its own answer with the
    record's correction key;
  * ``viewer`` records, images, previews, the dashboard;
  * ``reviewer`` correct any record, reject a correction;
  * ``admin`` reload, promote, roll back models, delete records.

Tokens come from DIGITREC_API_TOKEN / DIGITREC_ADMIN_TOKEN / DIGITREC_REVIEWER_TOKEN / DIGITREC_VIEWER_TOKEN,
from a file named by DIGITREC_TOKENS_FILE (``<role> <token>`` per line), and, when a protected service
has no admin token, from ``<data dir>/access_token``: made at first start (mode 0600), so replicas
sharing the volume share it; ``digitrec token show|rotate`` manages it, and a running service picks a
rotated token up within ``TOKEN_FILE_CHECK_SECONDS``.

A browser exchanges a token for a session cookie (HttpOnly, SameSite=Strict, Secure behind TLS) once:
``/?token=...`` answers a redirect to the same address without it, or the page's token field posts it
to /api/v1/session. The cookie holds the role, an expiry and an HMAC keyed with the token itself, so
rotating a token ends its sessions.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from werkzeug.wrappers import Request

from digitrec.errors import ConfigurationError

log = logging.getLogger(__name__)

ROLES = ("anonymous", "viewer", "reviewer", "admin")
RANK = {role: rank for rank, role in enumerate(ROLES)}
TOKEN_FILE = "access_token"
SALT_FILE = "client_salt"
TOKEN_FILE_CHECK_SECONDS = 5.0
SESSION_COOKIE = "digitrec_session"
SESSION_SECONDS = 12 * 3600
ROLE_VARIABLES = (
    ("admin", "DIGITREC_API_TOKEN"),
    ("admin", "DIGITREC_ADMIN_TOKEN"),
    ("reviewer", "DIGITREC_REVIEWER_TOKEN"),
    ("viewer", "DIGITREC_VIEWER_TOKEN"),
)
MIN_TOKEN_LENGTH = 16
_ENVIRON_KEY = "digitrec.role"


class AccessDenied(Exception):
    """Raised by ``require``: 401 when the request has no valid credentials, 403 when its role is too low."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for 0.0.0.0, ::, names and real addresses."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def read_secret(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    if (path.stat().st_mode & 0o077) and os.name == "posix":
        log.warning("%s is readable by others; making it owner-only (chmod 600)", path)
        path.chmod(0o600)
    return text or None


def ensure_secret(path: Path, make=new_token) -> tuple[str, bool]:
    """The secret in ``path``, made (owner-only) if there is none; (value, made now).

    Written to a private temporary file and then hard-linked into place, so several processes starting
    together all end up with the one value that won, never with a half-written file.
    """
    existing = read_secret(path)
    if existing is not None:
        return existing, False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(value + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)
            made = True
        except FileExistsError:
            made = False
    finally:
        temporary.unlink(missing_ok=True)
    if not made:
        existing = read_secret(path)
        if existing is None:
            raise ConfigurationError(f"{path} exists but holds no token")
        return existing, False
    return value, True


def rotate_secret(path: Path) -> str:
    """Replace the secret in ``path`` by a new one (atomically, owner-only); returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    value = new_token()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(value + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return value


def tokens_from_file(path: Path) -> list[tuple[str, str]]:
    """``<role> <token>`` per line (``#`` comments, blank lines ignored) -> [(role, token)]."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigurationError(f"DIGITREC_TOKENS_FILE: cannot read {path}: {exc.strerror}") from None
    found = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in ROLES[1:]:
            raise ConfigurationError(f"{path}:{number}: expected '<viewer|reviewer|admin> <token>'")
        found.append((parts[0], check_token(parts[1], f"{path}:{number}")))
    return found


def check_token(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigurationError(f"{where}: a token must have at least {MIN_TOKEN_LENGTH} characters")
    return token


def configured_tokens(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(role, token) pairs from the environment and DIGITREC_TOKENS_FILE."""
    found = []
    for role, name in ROLE_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            found.append((role, value if name == "DIGITREC_API_TOKEN" else check_token(value, name)))
    if environ.get("DIGITREC_TOKENS_FILE"):
        found.extend(tokens_from_file(Path(environ["DIGITREC_TOKENS_FILE"])))
    return found


@dataclasses.dataclass(frozen=True)
class StartupToken:
    """What the server prints at start about the token (the token itself only when just made)."""

    where: str
    token: str
    made: bool


class FileSecrets:
    """Secrets as owner-only files in the data directory (replicas sharing the volume share them)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    def where(self, name: str) -> str:
        return str(self.data_dir / name)

    def get(self, name: str, make) -> tuple[str, bool]:
        return ensure_secret(self.data_dir / name, make)

    def version(self, name: str) -> object:
        """Changes when the secret was replaced (one stat)."""
        stat = (self.data_dir / name).stat()
        return (stat.st_mtime_ns, stat.st_ino)

    def rotate(self, name: str, make) -> str:
        return rotate_secret(self.data_dir / name)


class StoreSecrets:
    """Secrets in the records store (Cassandra's ``<table>_secrets``), for replicas that share a store but
    no volume (Kubernetes pods with their own emptyDir): the first replica writes, all read the same.

    A service starts (and spools) while Cassandra is unreachable: then a secret comes from the data
    volume instead (``fallback``), with a warning, and the store is asked again at the next look."""

    def __init__(self, store, fallback: FileSecrets) -> None:
        self.store = store
        self.fallback = fallback

    def where(self, name: str) -> str:
        return f"the records store ({self.store.engine}, secret {name!r})"

    def get(self, name: str, make) -> tuple[str, bool]:
        try:
            return self.store.shared_secret(name, make)
        except Exception as exc:  # noqa: BLE001 - the store is down: serve with the volume's secret
            log.warning(
                "cannot read secret %r from the records store (%s); using %s", name, exc, self.fallback.where(name)
            )
            return self.fallback.get(name, make)

    def version(self, name: str) -> object:
        return self.get(name, new_token)[0]

    def rotate(self, name: str, make) -> str:
        return self.store.shared_secret(name, make, replace=True)[0]


def secrets_for(store, data_dir: Path):
    """Where this service keeps its secrets: the store when it can share them (Cassandra), else files."""
    files = FileSecrets(data_dir)
    return StoreSecrets(store, files) if hasattr(store, "shared_secret") else files


def startup_lines(policy: AccessPolicy, url: str) -> list[str]:
    """What the server prints at start: the address with the token once, when the token was just made
    (as Jupyter does); afterwards only where it is, since logs are kept and read by many."""
    startup = policy.startup
    if policy.open:
        return []
    if startup is None:
        return ["records, images and the dashboard need a token (configured in the environment)"]
    if startup.made:
        return [
            f"made an access token in {startup.where} (readable by its owner only); open this address once "
            f"to sign in: {url}?token={startup.token}",
            "later: `digitrec token show` prints the token, `digitrec token rotate` replaces it",
        ]
    return [f"records, images and the dashboard need the token in {startup.where} (`digitrec token show`)"]


class AccessPolicy:
    """Decides each request's role; built once per app, cheap per request (no file reads, one HMAC at most)."""

    def __init__(
        self,
        *,
        host: str,
        data_dir: Path,
        environ: Mapping[str, str],
        api_token: str | None = None,
        secrets_source: FileSecrets | StoreSecrets | None = None,
    ) -> None:
        env = dict(environ)
        if api_token and not env.get("DIGITREC_API_TOKEN"):
            env["DIGITREC_API_TOKEN"] = api_token
        self._static = configured_tokens(env)
        self.predict_token = env.get("DIGITREC_PREDICT_TOKEN", "").strip() or None
        if self.predict_token:
            check_token(self.predict_token, "DIGITREC_PREDICT_TOKEN")
        self.open = is_loopback(host) and not self._static and not self.predict_token
        self.secrets = secrets_source or FileSecrets(data_dir)
        # the token made for this service: only when it is protected and no admin token is configured
        self.managed = not self.open and not any(role == "admin" for role, _ in self._static)
        self.trusted_proxies = _networks(env.get("DIGITREC_TRUSTED_PROXIES", ""))
        self.cookie_secure = env.get("DIGITREC_COOKIE_SECURE", "").strip().lower() in ("1", "true", "yes", "on")
        self.allowed_origins = frozenset(
            o.strip().rstrip("/").lower() for o in env.get("DIGITREC_ALLOWED_ORIGINS", "").split(",") if o.strip()
        )
        self._salt = self.secrets.get(SALT_FILE, lambda: secrets.token_hex(32))[0].encode()
        self._lock = threading.Lock()
        self._version: object = None
        self._next_check = 0.0
        self._tokens: list[tuple[str, bytes]] = [(role, token.encode()) for role, token in self._static]
        self.startup: StartupToken | None = None
        if self.managed:
            token, made = self.secrets.get(TOKEN_FILE, new_token)
            self.startup = StartupToken(self.secrets.where(TOKEN_FILE), token, made)
            self._use(token)
            self._version = self.secrets.version(TOKEN_FILE)

    # ------------------------------------------------------------------ tokens
    def _use(self, token: str | None) -> None:
        tokens = [(role, value.encode()) for role, value in self._static]
        if token:
            tokens.append(("admin", token.encode()))
        self._tokens = tokens

    def _refresh(self) -> None:
        """Pick up a rotated token: at most one look (a stat, or a store read) per ``TOKEN_FILE_CHECK_SECONDS``."""
        if not self.managed:
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + TOKEN_FILE_CHECK_SECONDS
            try:
                version = self.secrets.version(TOKEN_FILE)
                if version != self._version:
                    self._use(self.secrets.get(TOKEN_FILE, new_token)[0])
                    self._version = version
                    log.info("the access token in %s changed; using the new one", self.secrets.where(TOKEN_FILE))
            except Exception:  # noqa: BLE001 - keep the token read before; look again later
                log.warning(
                    "cannot read the access token in %s; keeping the one read before", self.secrets.where(TOKEN_FILE)
                )

    def role_for_token(self, given: str) -> str | None:
        """The highest role of a matching token; every configured token is compared (constant time each)."""
        self._refresh()
        raw = given.strip().encode()
        best: str | None = None
        for role, token in self._tokens:
            if hmac.compare_digest(raw, token) and (best is None or RANK[role] > RANK[best]):
                best = role
        return best

    def is_predict_token(self, given: str) -> bool:
        expected = self.predict_token
        return expected is not None and hmac.compare_digest(given.strip().encode(), expected.encode())

    # ------------------------------------------------------------------ sessions
    def session_cookie(self, role: str, token: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + SESSION_SECONDS)
        return f"{role}.{expires}.{_sign(token.encode(), role, expires)}"

    def role_for_session(self, value: str, now: float | None = None) -> str | None:
        try:
            role, expires_text, signature = value.split(".")
            expires = int(expires_text)
        except ValueError:
            return None
        if role not in RANK or expires < (now if now is not None else time.time()):
            return None
        self._refresh()
        for token_role, token in self._tokens:
            if token_role == role and hmac.compare_digest(_sign(token, role, expires), signature):
                return role
        return None

    # ------------------------------------------------------------------ per request
    def authenticated_role(self, request: Request) -> str | None:
        """The role the request's token or session cookie gives, or None (no credentials, or wrong ones)."""
        environ = request.environ
        if _ENVIRON_KEY in environ:
            return environ[_ENVIRON_KEY]
        role = None
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header:
            scheme, _, given = header.partition(" ")
            if scheme.lower() == "bearer" and given.strip():
                role = self.role_for_token(given)
        if role is None:
            cookie = request.cookies.get(SESSION_COOKIE) if "HTTP_COOKIE" in environ else None
            if cookie:
                role = self.role_for_session(cookie)
        environ[_ENVIRON_KEY] = role
        return role

    def role_of(self, request: Request) -> str:
        """``admin`` on an open service, else the authenticated role or ``anonymous``."""
        if self.open:
            return "admin"
        return self.authenticated_role(request) or "anonymous"

    def require(self, request: Request, role: str) -> str:
        """The request's role if it is at least ``role``; else AccessDenied (401 anonymous, 403 too low)."""
        have = self.role_of(request)
        if RANK[have] >= RANK[role]:
            return have
        if have == "anonymous":
            raise AccessDenied(401, f"this needs a {role} token: 'Authorization: Bearer <token>' or a session")
        raise AccessDenied(403, f"this needs the {role} role; your token gives {have}")

    def may_predict(self, request: Request) -> bool:
        if self.predict_token is None or self.open:
            return True
        header = request.environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and self.is_predict_token(given):
            return True
        return self.authenticated_role(request) is not None

    def client_address(self, request: Request) -> str:
        """The client's address: the peer's, or (from a trusted proxy) the last X-Forwarded-For entry."""
        peer = request.environ.get("REMOTE_ADDR") or ""
        if self.trusted_proxies and peer:
            forwarded = request.environ.get("HTTP_X_FORWARDED_FOR", "")
            if forwarded and _in_networks(peer, self.trusted_proxies):
                return forwarded.rsplit(",", 1)[-1].strip() or peer
        return peer

    def client_hash(self, request: Request) -> str:
        """A salted hash of the client's address (16 hex digits): tells clients apart, never stores one."""
        address = self.client_address(request).encode()
        return hmac.new(self._salt, address, hashlib.sha256).hexdigest()[:16]

    def is_secure(self, request: Request) -> bool:
        if self.cookie_secure or request.environ.get("wsgi.url_scheme") == "https":
            return True
        peer = request.environ.get("REMOTE_ADDR") or ""
        proto = request.environ.get("HTTP_X_FORWARDED_PROTO", "").lower()
        return proto == "https" and bool(self.trusted_proxies) and _in_networks(peer, self.trusted_proxies)


def _sign(key: bytes, role: str, expires: int) -> str:
    digest = hmac.new(key, f"session|{role}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    found = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigurationError(f"DIGITREC_TRUSTED_PROXIES: {part!r} is not an address or network") from None
    return tuple(found)


def _in_networks(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
