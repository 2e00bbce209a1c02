"""Settings, read once from the environment into one typed object.

Every value is checked when it is read; a bad one raises `SettingsError` naming the variable,
so the service refuses to start instead of failing later.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEFAULT_SQLITE_FILE = "socketsvc.sqlite3"
SECRET_FILE = "socketsvc.secret"
DEFAULT_COMMIT_DELAY = 0.002
"""Seconds between group commits while the process is busy (socketsvc.storage.pacing)."""


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with. Build it with `Settings.from_env()`."""

    host: str = "0.0.0.0"
    port: int = 8080
    database_url: str = f"sqlite:///{DEFAULT_SQLITE_FILE}"
    redis_url: str | None = None
    redis_channel: str = "socketsvc"
    secret: str = field(default="", repr=False)
    secret_source: str = "env"
    """`env` when SOCKETSVC_SECRET was set, else the path of the generated secret file."""
    allowed_origins: tuple[str, ...] | None = None
    """None: same origin only; ("*",): any origin; else the exact origins allowed."""
    max_text_length: int = 4000
    visitor_token_ttl: int = 30 * 24 * 3600
    bot: str = "kb"
    bot_kb_path: str | None = None
    bot_delay: float = 0.0
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    log_level: str = "INFO"
    log_format: str = "text"
    agent_grace_seconds: float = 60.0
    dev_mode: bool = False
    message_rate: float = 2.0
    message_burst: float = 30.0
    connect_rate: int = 60
    max_connections_per_ip: int = 100
    max_connections: int = 20000
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    identity_secret: str | None = field(default=None, repr=False)
    agent_jwt_algorithm: str = "HS256"
    agent_jwt_public_key: str | None = None
    agent_jwt_issuer: str | None = None
    agent_jwt_audience: str | None = None
    commit_delay: float = DEFAULT_COMMIT_DELAY
    sqlite_busy_timeout: float = 30.0
    """Seconds a SQLite write waits for another process's lock before `unavailable`."""
    gc_freeze_interval: float = 1.0
    """Seconds between GC freeze steps (socketsvc.runtime.gcpolicy); 0: CPython's default
    collector."""
    gc_full_growth: float = 25.0
    """Growth of the memory blocks since the last full collection, in %, that triggers the next."""

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        reader = _Reader(env)
        database_url = reader.database_url("DATABASE_URL", f"sqlite:///{DEFAULT_SQLITE_FILE}")
        redis_url = reader.optional("REDIS_URL")
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
        if redis_url is not None and database_url.startswith("sqlite"):
            raise SettingsError(
                "REDIS_URL is set but DATABASE_URL is SQLite: several processes need a shared "
                "database; set DATABASE_URL=postgresql://..."
            )
        secret, source = reader.secret("SOCKETSVC_SECRET", database_url)
        algorithm, public_key = reader.agent_jwt()
        return cls(
            host=reader.text("HOST", "0.0.0.0"),
            port=reader.integer("PORT", 8080, low=0, high=65535),
            database_url=database_url,
            redis_url=redis_url,
            redis_channel=reader.text("REDIS_CHANNEL", "socketsvc"),
            secret=secret,
            secret_source=source,
            allowed_origins=reader.origins("ALLOWED_ORIGINS"),
            max_text_length=reader.integer("MAX_TEXT_LENGTH", 4000, low=1, high=16000),
            visitor_token_ttl=reader.integer("VISITOR_TOKEN_TTL", 30 * 24 * 3600, low=60),
            bot=reader.text("BOT", "kb"),
            bot_kb_path=reader.optional("BOT_KB_PATH"),
            bot_delay=reader.number("BOT_DELAY", 0.0, low=0.0, high=60.0),
            ping_interval=reader.number("PING_INTERVAL", 25.0, low=1.0, high=29.0),
            ping_timeout=reader.number("PING_TIMEOUT", 20.0, low=1.0, high=120.0),
            log_level=reader.choice(
                "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True
            ),
            log_format=reader.choice("LOG_FORMAT", "text", ("text", "json")),
            agent_grace_seconds=reader.number("AGENT_GRACE_SECONDS", 60.0, low=0.0),
            dev_mode=reader.boolean("DEV_MODE", False),
            message_rate=reader.number("MESSAGE_RATE", 2.0, low=0.01),
            message_burst=reader.number("MESSAGE_BURST", 30.0, low=1.0),
            connect_rate=reader.integer("CONNECT_RATE", 60, low=1),
            max_connections_per_ip=reader.integer("MAX_CONNECTIONS_PER_IP", 100, low=1),
            max_connections=reader.integer("MAX_CONNECTIONS", 20000, low=1),
            trusted_proxies=reader.networks("TRUSTED_PROXIES"),
            identity_secret=reader.optional_secret("IDENTITY_SECRET"),
            agent_jwt_algorithm=algorithm,
            agent_jwt_public_key=public_key,
            agent_jwt_issuer=reader.optional("AGENT_JWT_ISSUER"),
            agent_jwt_audience=reader.optional("AGENT_JWT_AUDIENCE"),
            commit_delay=reader.number("COMMIT_DELAY", DEFAULT_COMMIT_DELAY, low=0.0, high=0.1),
            sqlite_busy_timeout=reader.number("SQLITE_BUSY_TIMEOUT", 30.0, low=0.0, high=600.0),
            gc_freeze_interval=reader.number("GC_FREEZE_INTERVAL", 1.0, low=0.0, high=3600.0),
            gc_full_growth=reader.number("GC_FULL_GROWTH", 25.0, low=1.0, high=1000.0),
        )


class _Reader:
    """Casts environment values, raising `SettingsError` that names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingsError(f"{name} must be {bound}, got {value}")
        return value

    def number(self, name: str, default: float, *, low: float, high: float | None = None) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if value != value or value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise SettingsError(f"{name} must be {bound}, got {raw}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    def choice(self, name: str, default: str, allowed: tuple[str, ...], upper: bool = False) -> str:
        raw = self.optional(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    def database_url(self, name: str, default: str) -> str:
        url = self.optional(name) or default
        scheme = urlsplit(url).scheme
        if scheme not in ("sqlite", "postgres", "postgresql"):
            raise SettingsError(
                f"{name} must be sqlite:///PATH or postgresql://..., got scheme {scheme!r}"
            )
        if scheme == "sqlite":
            path = url.removeprefix("sqlite:///")
            if not url.startswith("sqlite:///") or not path or path.startswith(":memory:"):
                raise SettingsError(
                    f"{name} for SQLite must name a file: sqlite:///relative or sqlite:////abs"
                )
        return url

    def networks(self, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        raw = self.optional(name)
        if raw is None:
            return ()
        try:
            return tuple(
                ipaddress.ip_network(item.strip(), strict=False)
                for item in raw.split(",")
                if item.strip()
            )
        except ValueError as exc:
            raise SettingsError(f"{name} must list IP addresses or CIDR ranges: {exc}") from None

    def optional_secret(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None and len(value.encode()) < 32:
            raise SettingsError(f"{name} must be at least 32 bytes long (HS256 key size)")
        return value

    def agent_jwt(self) -> tuple[str, str | None]:
        """(AGENT_JWT_ALGORITHM, AGENT_JWT_PUBLIC_KEY), checked against each other."""
        key = self.optional("AGENT_JWT_PUBLIC_KEY")
        if key is not None and key.startswith("@"):
            try:
                key = Path(key[1:]).read_text()
            except OSError as exc:
                raise SettingsError(f"AGENT_JWT_PUBLIC_KEY: cannot read {key[1:]}: {exc}") from None
        default = "HS256" if key is None else "RS256"
        algorithm = self.text("AGENT_JWT_ALGORITHM", default).upper()
        asymmetric = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
        if key is None and algorithm != "HS256":
            raise SettingsError("AGENT_JWT_ALGORITHM other than HS256 needs AGENT_JWT_PUBLIC_KEY")
        if key is not None and algorithm not in asymmetric:
            raise SettingsError(
                "AGENT_JWT_ALGORITHM must be an asymmetric algorithm (RS256, ES256, ...) "
                "when AGENT_JWT_PUBLIC_KEY is set"
            )
        if key is not None and "PUBLIC KEY" not in key:
            raise SettingsError("AGENT_JWT_PUBLIC_KEY must be a PEM public key (or @path to one)")
        return algorithm, key

    def origins(self, name: str) -> tuple[str, ...] | None:
        raw = self.optional(name)
        if raw is None:
            return None
        origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
        if not origins:
            raise SettingsError(f"{name} lists no origin; unset it to allow the same origin only")
        for origin in origins:
            if origin == "*":
                continue
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise SettingsError(
                    f"{name} must list exact origins like https://example.com, got {origin!r}"
                )
        if "*" in origins and len(origins) > 1:
            raise SettingsError(f"{name}: '*' cannot be combined with other origins")
        return origins

    def secret(self, name: str, database_url: str) -> tuple[str, str]:
        value = self.optional(name)
        if value is not None:
            if len(value.encode()) < 32:
                raise SettingsError(f"{name} must be at least 32 bytes long (HS256 key size)")
            return value, "env"
        return _generated_secret(database_url)


def sqlite_path(database_url: str) -> Path:
    """The file a `sqlite:///...` URL points at."""
    return Path(database_url.removeprefix("sqlite:///"))


def _generated_secret(database_url: str) -> tuple[str, str]:
    """Load or create the 0600 secret file kept beside the SQLite database (or in the cwd).

    Returns the secret and the file's path.
    """
    base = sqlite_path(database_url).parent if database_url.startswith("sqlite") else Path(".")
    path = base / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if len(value.encode()) < 32:
            raise SettingsError(
                f"SOCKETSVC_SECRET unset and {path} holds no usable secret"
            ) from None
        return value, str(path)
    value = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value, str(path)
