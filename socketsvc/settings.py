"""Settings, read once from the environment into one typed object.

Every setting is declared once, as a field of `Settings` whose default is `setting(...)`: the
environment variable, the default, the accepted range or choices and the doc. `Settings.from_env`
reads the fields in order, the README's configuration table is `markdown_table()` (printed by
`socketsvc settings --markdown`) and `socketsvc --help` lists `plain_list()`.

Every value is checked when it is read; a bad one raises `SettingsError` naming the variable,
so the service refuses to start instead of failing later.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import re
import secrets
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from socketsvc.bots.openai_bot import DEFAULT_SYSTEM_PROMPT

log = logging.getLogger(__name__)

DEFAULT_SQLITE_FILE = "socketsvc.sqlite3"
SECRET_FILE = "socketsvc.secret"
DEFAULT_COMMIT_DELAY = 0.002
"""Seconds between group commits while the process is busy (socketsvc.storage.pacing)."""

TABLE_START = "<!-- settings:start -->"
TABLE_END = "<!-- settings:end -->"

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    """One declared setting. `attr`, `type` and `default` come from its field of `Settings`."""

    env: str
    """The environment variable."""
    doc: str
    """Markdown: the README row's meaning (empty for a setting that shares the row of `row`)."""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    """Accepted values; all upper case: the value is upper-cased, else lower-cased."""
    shown: str | None = None
    """Markdown for the README's default column instead of the default itself."""
    read: Callable[[_Reader, Setting], Any] | None = None
    """A reader for what the type alone does not say (URLs, secrets, origins, ...)."""
    row: str | None = None
    """The variable of an earlier setting whose README row this one shares."""
    last: bool = False
    """Read after every other setting: its reader writes a file, which a bad value of any other
    setting should not leave behind."""
    attr: str = ""
    type: Any = None
    default: Any = None

    def shown_default(self) -> str:
        """The default as the README's table shows it (Markdown)."""
        if self.shown is not None:
            return self.shown
        value = self.default
        if value is None or value == ():
            return "unset"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, float):
            return f"`{value:g}`"
        return f"`{value}`"

    def accepted(self) -> str:
        """What values are accepted, in words ("" when the type says it all)."""
        if self.choices:
            return ", ".join(self.choices)
        if self.type is bool:
            return "true or false"
        if self.low is not None and self.high is not None:
            return f"{self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"at least {self.low:g}"
        if self.high is not None:
            return f"at most {self.high:g}"
        return ""


_SETTING = "socketsvc.setting"
_DERIVED = "socketsvc.derived"


def setting(
    *,
    env: str,
    default: T,
    doc: str = "",
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    shown: str | None = None,
    read: Callable[[_Reader, Setting], T] | None = None,
    row: str | None = None,
    last: bool = False,
    secret: bool = False,
) -> T:
    """Declare a field of `Settings` read from the variable `env` (see `Setting`).

    `secret=True` keeps the value out of the repr.
    """
    spec = Setting(env, doc, low, high, choices, shown, read, row, last)
    made: T = field(default=default, repr=not secret, metadata={_SETTING: spec})
    return made


def derived(*, default: T, read: Callable[[_Reader], T]) -> T:
    """Declare a field of `Settings` that no variable sets: `read` works it out from the others."""
    made: T = field(default=default, metadata={_DERIVED: read})
    return made


class _Reader:
    """Casts environment values, raising `SettingsError` that names the variable.

    `value(attr)` reads a field on demand (once), so a reader can use the fields it depends on.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.values: dict[str, Any] = {}
        self.secret_source = "env"
        self._jwt: tuple[str, str | None] | None = None

    def value(self, attr: str) -> Any:
        if attr not in self.values:
            spec = _BY_ATTR.get(attr)
            if spec is not None:
                self.values[attr] = (spec.read or _Reader.plain)(self, spec)
            else:
                self.values[attr] = _DERIVED_READERS[attr](self)
        return self.values[attr]

    def plain(self, s: Setting) -> Any:
        """A value whose type (and range or choices) says how to read it."""
        if s.choices:
            upper = all(c == c.upper() for c in s.choices)
            return self.choice(s.env, s.default, s.choices, upper=upper)
        if s.type is bool:
            return self.boolean(s.env, s.default)
        if s.type is int:
            low = None if s.low is None else int(s.low)
            high = None if s.high is None else int(s.high)
            return self.integer(s.env, s.default, low=low, high=high)
        if s.type is float:
            low_f = None if s.low is None else float(s.low)
            high_f = None if s.high is None else float(s.high)
            return self.number(s.env, s.default, low=low_f, high=high_f)
        if s.type is str:
            return self.text(s.env, s.default)
        return self.optional(s.env)

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, *, low: int | None, high: int | None = None) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise SettingsError(f"{name} must be {_bound(low, high)}, got {value}")
        return value

    def number(
        self, name: str, default: float, *, low: float | None, high: float | None = None
    ) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if (
            value != value
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise SettingsError(f"{name} must be {_bound(low, high)}, got {raw}")
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

    # readers for what the type alone does not say -----------------------------------------

    def database_url(self, s: Setting) -> str:
        name = s.env
        url = self.optional(name) or str(s.default)
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

    def redis_url(self, s: Setting) -> str | None:
        url = self.optional(s.env)
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"{s.env} must start with redis://, rediss:// or unix://")
        if url is not None and str(self.value("database_url")).startswith("sqlite"):
            raise SettingsError(
                f"{s.env} is set but DATABASE_URL is SQLite: several processes need a shared "
                "database; set DATABASE_URL=postgresql://..."
            )
        return url

    def networks(self, s: Setting) -> tuple[Network, ...]:
        raw = self.optional(s.env)
        if raw is None:
            return ()
        try:
            return tuple(
                ipaddress.ip_network(item.strip(), strict=False)
                for item in raw.split(",")
                if item.strip()
            )
        except ValueError as exc:
            raise SettingsError(f"{s.env} must list IP addresses or CIDR ranges: {exc}") from None

    def optional_secret(self, s: Setting) -> str | None:
        value = self.optional(s.env)
        if value is not None and len(value.encode()) < 32:
            raise SettingsError(f"{s.env} must be at least 32 bytes long (HS256 key size)")
        return value

    def jwt_algorithm(self, s: Setting) -> str:
        return self.agent_jwt(str(s.default))[0]

    def jwt_public_key(self, s: Setting) -> str | None:
        return self.agent_jwt(str(_BY_ATTR["agent_jwt_algorithm"].default))[1]

    def agent_jwt(self, symmetric: str) -> tuple[str, str | None]:
        """(AGENT_JWT_ALGORITHM, AGENT_JWT_PUBLIC_KEY), checked against each other."""
        if self._jwt is not None:
            return self._jwt
        key = self.optional("AGENT_JWT_PUBLIC_KEY")
        if key is not None and key.startswith("@"):
            try:
                key = Path(key[1:]).read_text()
            except OSError as exc:
                raise SettingsError(f"AGENT_JWT_PUBLIC_KEY: cannot read {key[1:]}: {exc}") from None
        default = symmetric if key is None else "RS256"
        algorithm = self.text("AGENT_JWT_ALGORITHM", default).upper()
        asymmetric = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
        if key is None and algorithm != symmetric:
            raise SettingsError(
                f"AGENT_JWT_ALGORITHM other than {symmetric} needs AGENT_JWT_PUBLIC_KEY"
            )
        if key is not None and algorithm not in asymmetric:
            raise SettingsError(
                "AGENT_JWT_ALGORITHM must be an asymmetric algorithm (RS256, ES256, ...) "
                "when AGENT_JWT_PUBLIC_KEY is set"
            )
        if key is not None and "PUBLIC KEY" not in key:
            raise SettingsError("AGENT_JWT_PUBLIC_KEY must be a PEM public key (or @path to one)")
        self._jwt = algorithm, key
        return self._jwt

    def llm_base_url(self, s: Setting) -> str | None:
        url = self.optional(s.env)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise SettingsError(f"{s.env} must be an http:// or https:// URL, got {url!r}")
        return url

    def llm_model(self, s: Setting) -> str | None:
        """LLM_MODEL, and with BOT=openai the check that it and LLM_BASE_URL are set."""
        model = self.optional(s.env)
        if str(self.value("bot")).strip() == "openai":
            missing = [
                name
                for name, value in (("LLM_BASE_URL", self.value("llm_base_url")), (s.env, model))
                if value is None
            ]
            if missing:
                raise SettingsError(f"BOT=openai needs {' and '.join(missing)}")
        return model

    def webhook_url(self, s: Setting) -> str | None:
        url = self.optional(s.env)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise SettingsError(f"{s.env} must be an http:// or https:// URL, got {url!r}")
        return url

    def webhook_secret(self, s: Setting) -> str | None:
        """BOT_WEBHOOK_SECRET, and with BOT=webhook the check that it and the URL are set."""
        secret = self.optional(s.env)
        if secret is not None and len(secret.encode()) < 16:
            raise SettingsError(f"{s.env} must be at least 16 bytes long")
        if str(self.value("bot")).strip() == "webhook":
            missing = [
                name
                for name, value in (
                    ("BOT_WEBHOOK_URL", self.value("bot_webhook_url")),
                    (s.env, secret),
                )
                if value is None
            ]
            if missing:
                raise SettingsError(f"BOT=webhook needs {' and '.join(missing)}")
        return secret

    def origins(self, s: Setting) -> tuple[str, ...] | None:
        name = s.env
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

    def secret(self, s: Setting) -> str:
        """The secret from `s.env`, else the generated one beside the database."""
        value = self.optional(s.env)
        if value is not None:
            if len(value.encode()) < 32:
                raise SettingsError(f"{s.env} must be at least 32 bytes long (HS256 key size)")
            self.secret_source = "env"
            return value
        value, self.secret_source = _generated_secret(str(self.value("database_url")))
        return value

    def bot_spec(self, s: Setting) -> str:
        value = self.text(s.env, str(s.default))
        if value.startswith("workers:"):
            bot_name(value.removeprefix("workers:"), s.env)
        return value

    def bot_keys(self, s: Setting) -> tuple[tuple[str, str], ...]:
        raw = self.optional(s.env)
        if raw is None:
            return ()
        keys: list[tuple[str, str]] = []
        for item in (i.strip() for i in raw.split(",")):
            name, sep, key = item.partition(":")
            if not item:
                continue
            if not sep or len(key.encode()) < 16:
                raise SettingsError(f"{s.env} must list name:key pairs, each key ≥ 16 bytes")
            keys.append((bot_name(name, s.env), key))
        return tuple(keys)

    def source_of_secret(self) -> str:
        self.value("secret")
        return self.secret_source


BOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def bot_name(name: str, env: str) -> str:
    """A bot's name as settings give it: letters, digits, `.`, `_`, `-`, up to 64."""
    if not BOT_NAME.match(name):
        raise SettingsError(
            f"{env}: bot name {name!r} must be 1-64 letters, digits, '.', '_' or '-'"
        )
    return name


def _bound(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with. Build it with `Settings.from_env()`.

    The fields are in the order of the README's configuration table.
    """

    port: int = setting(
        env="PORT", default=8080, low=0, high=65535, doc="port to serve on (`0`: any free port)"
    )
    host: str = setting(env="HOST", default="0.0.0.0", doc="address to bind")
    database_url: str = setting(
        env="DATABASE_URL",
        default=f"sqlite:///{DEFAULT_SQLITE_FILE}",
        read=_Reader.database_url,
        doc="`sqlite:///relative/path`, `sqlite:////absolute/path`, or "
        "`postgresql://user:pass@host/db` (`postgres://` and `?sslmode=require` accepted)",
    )
    redis_url: str | None = setting(
        env="REDIS_URL",
        default=None,
        read=_Reader.redis_url,
        shown="unset (single process)",
        doc="`redis://host:6379/0` (or `rediss://`): broadcast across processes; needs PostgreSQL",
    )
    redis_channel: str = setting(
        env="REDIS_CHANNEL",
        default="socketsvc",
        doc="pub/sub channel (lets deployments share a Redis)",
    )
    secret: str = setting(
        env="SOCKETSVC_SECRET",
        default="",
        read=_Reader.secret,
        last=True,
        secret=True,
        shown="generated",
        doc="≥ 32 bytes; signs visitor tokens and HS256 agent JWTs. Unset: a random secret is kept "
        f"in a 0600 file `{SECRET_FILE}` beside the SQLite database and a warning is logged; "
        "production must set it",
    )
    secret_source: str = derived(default="env", read=_Reader.source_of_secret)
    """`env` when SOCKETSVC_SECRET was set, else the path of the generated secret file."""
    allowed_origins: tuple[str, ...] | None = setting(
        env="ALLOWED_ORIGINS",
        default=None,
        read=_Reader.origins,
        shown="same origin only",
        doc="comma-separated exact origins (`https://www.example.com`) allowed to connect from "
        "browsers, or `*` (logged as a warning)",
    )
    """None: same origin only; ("*",): any origin; else the exact origins allowed."""
    max_text_length: int = setting(
        env="MAX_TEXT_LENGTH",
        default=4000,
        low=1,
        high=16000,
        doc="characters per message after trimming",
    )
    visitor_token_ttl: int = setting(
        env="VISITOR_TOKEN_TTL",
        default=30 * 24 * 3600,
        low=60,
        shown="`2592000` (30 days)",
        doc="seconds a visitor token stays valid (re-issued on every connect)",
    )
    identity_secret: str | None = setting(
        env="IDENTITY_SECRET",
        default=None,
        read=_Reader.optional_secret,
        secret=True,
        doc="≥ 32 bytes; lets the host site vouch for its logged-in user "
        "(`auth: {identity: JWT}`) so their history follows them across devices",
    )
    agent_jwt_algorithm: str = setting(
        env="AGENT_JWT_ALGORITHM",
        default="HS256",
        read=_Reader.jwt_algorithm,
        shown="`HS256` (`RS256` with a key)",
        doc="algorithm agent JWTs must use",
    )
    agent_jwt_public_key: str | None = setting(
        env="AGENT_JWT_PUBLIC_KEY",
        default=None,
        read=_Reader.jwt_public_key,
        doc="PEM public key (or `@/path/to/key.pem`) to verify RS256/ES256 agent JWTs instead of "
        "the secret",
    )
    agent_jwt_issuer: str | None = setting(
        env="AGENT_JWT_ISSUER", default=None, doc="required `iss` / `aud` of agent JWTs"
    )
    agent_jwt_audience: str | None = setting(
        env="AGENT_JWT_AUDIENCE", default=None, row="AGENT_JWT_ISSUER"
    )
    agent_grace_seconds: float = setting(
        env="AGENT_GRACE_SECONDS",
        default=60.0,
        low=0.0,
        doc="how long an agent may be fully disconnected before its conversations return to the "
        "queue",
    )
    retention_days: int = setting(
        env="RETENTION_DAYS",
        default=0,
        low=0,
        doc="resolved conversations last changed longer ago than this many days are deleted "
        "with their messages and read marks (hourly, in batches); 0 keeps them forever",
    )
    admin_token: str | None = setting(
        env="ADMIN_TOKEN",
        default=None,
        read=_Reader.optional_secret,
        secret=True,
        doc="≥ 32 bytes; the bearer token of `GET`/`DELETE /api/visitors/{id}` (export, erase); "
        "unset: those endpoints answer 401",
    )
    bot: str = setting(
        env="BOT",
        default="kb",
        read=_Reader.bot_spec,
        doc="`kb` (knowledge-base bot), `openai` (an LLM that streams its replies, "
        "[LLM bot](docs/llm-bot.md)), `webhook` (each visitor message is POSTed, signed, to "
        "`BOT_WEBHOOK_URL`, [webhook bot](docs/webhook-bot.md)), `echo`, "
        "`package.module:factory`, or `workers:NAME`: "
        "the bot NAME's workers connected to `/bot` answer ([writing a bot](docs/writing-a-bot.md)"
        "; the `kb` bot greets and is the fallback)",
    )
    bot_keys: tuple[tuple[str, str], ...] = setting(
        env="BOT_KEYS",
        default=(),
        read=_Reader.bot_keys,
        secret=True,
        doc="`name:key,...`: keys a `/bot` worker of bot `name` may connect with (each ≥ 16 "
        "bytes), besides a JWT with role `bot` signed like agent tokens",
    )
    bot_fallback: str = setting(
        env="BOT_FALLBACK",
        default="kb",
        choices=("kb", "queue"),
        doc="what happens to a visitor message no bot worker took within `BOT_TIMEOUT` "
        "(none connected, or all busy), or the webhook did not answer (`BOT=webhook`): the "
        "built-in `kb` bot answers, or the conversation goes to the `queue`",
    )
    bot_timeout: float = setting(
        env="BOT_TIMEOUT",
        default=10.0,
        low=0.1,
        high=3600.0,
        doc="seconds a visitor message waits for an external bot (a `/bot` worker, or the "
        "webhook with all its attempts) before `BOT_FALLBACK`",
    )
    bot_redelivery_timeout: float = setting(
        env="BOT_REDELIVERY_TIMEOUT",
        default=30.0,
        low=0.5,
        high=3600.0,
        doc="seconds a `/bot` worker has to answer a delivery (a `message`, `handoff`, "
        "`resolve` or `done`) before it is given to another worker",
    )
    bot_kb_path: str | None = setting(
        env="BOT_KB_PATH",
        default=None,
        shown="packaged file",
        doc="knowledge-base JSON for the `kb` bot ([format](docs/bot-knowledge-base.md))",
    )
    bot_delay: float = setting(
        env="BOT_DELAY",
        default=0.0,
        low=0.0,
        high=60.0,
        doc='seconds the bot "thinks" before answering (demos, tests)',
    )
    bot_webhook_url: str | None = setting(
        env="BOT_WEBHOOK_URL",
        default=None,
        read=_Reader.webhook_url,
        doc="`BOT=webhook` (required): the URL each visitor message (and `conversation.opened` "
        "/ `resolved`) is POSTed to as JSON ([webhook bot](docs/webhook-bot.md))",
    )
    bot_webhook_secret: str | None = setting(
        env="BOT_WEBHOOK_SECRET",
        default=None,
        read=_Reader.webhook_secret,
        secret=True,
        doc="`BOT=webhook` (required, ≥ 16 bytes): the key of the `X-Socketsvc-Signature` "
        "HMAC-SHA256 the receiver checks",
    )
    bot_webhook_retries: int = setting(
        env="BOT_WEBHOOK_RETRIES",
        default=3,
        low=0,
        high=10,
        doc="`BOT=webhook`: attempts repeated after a connection error, a timeout, a 5xx or a "
        "429 (with a backoff, all within `BOT_TIMEOUT`); other 4xx are not repeated",
    )
    bot_webhook_attempt_timeout: float = setting(
        env="BOT_WEBHOOK_ATTEMPT_TIMEOUT",
        default=5.0,
        low=0.1,
        high=60.0,
        doc="`BOT=webhook`: seconds one attempt may take",
    )
    llm_base_url: str | None = setting(
        env="LLM_BASE_URL",
        default=None,
        read=_Reader.llm_base_url,
        doc="`BOT=openai` (required): base URL of an OpenAI-compatible API, up to `/v1` "
        "(`https://api.openai.com/v1`, Ollama `http://localhost:11434/v1`); the bot posts to "
        "`{LLM_BASE_URL}/chat/completions`",
    )
    llm_model: str | None = setting(
        env="LLM_MODEL",
        default=None,
        read=_Reader.llm_model,
        doc="`BOT=openai` (required): the model name the endpoint serves (`gpt-4o-mini`, "
        "`llama3.2`, ...)",
    )
    llm_api_key: str | None = setting(
        env="LLM_API_KEY",
        default=None,
        secret=True,
        doc="`BOT=openai`: sent as `Authorization: Bearer KEY` (unset: no header, for local "
        "servers)",
    )
    llm_system_prompt: str = setting(
        env="LLM_SYSTEM_PROMPT",
        default=DEFAULT_SYSTEM_PROMPT,
        shown="built in ([LLM bot](docs/llm-bot.md))",
        doc="`BOT=openai`: the system prompt; the knowledge-base entries closest to the "
        "question follow it",
    )
    llm_max_tokens: int = setting(
        env="LLM_MAX_TOKENS",
        default=512,
        low=1,
        high=32768,
        doc="`BOT=openai`: `max_tokens` of each reply",
    )
    llm_timeout: float = setting(
        env="LLM_TIMEOUT",
        default=20.0,
        low=1.0,
        high=25.0,
        doc="`BOT=openai`: seconds a whole streamed reply may take (then the fallback); under "
        "the bot's 30 s limit",
    )
    message_rate: float = setting(
        env="MESSAGE_RATE",
        default=2.0,
        low=0.01,
        doc="per-connection message budget (token bucket): 30 messages in a row pass (a person "
        "writing fast, or 30 lines sent one by one), then 2 a second (120 a minute, beyond any "
        "person); over it: `rate_limited` with `retry_after_ms`, and 30 refusals in a row "
        "disconnect (a flooder)",
    )
    message_burst: float = setting(env="MESSAGE_BURST", default=30.0, low=1.0, row="MESSAGE_RATE")
    connect_rate: int = setting(
        env="CONNECT_RATE", default=60, low=1, doc="connection attempts per minute per client IP"
    )
    max_connections_per_ip: int = setting(
        env="MAX_CONNECTIONS_PER_IP",
        default=100,
        low=1,
        doc="open connections per client IP per process",
    )
    max_connections: int = setting(
        env="MAX_CONNECTIONS",
        default=20000,
        low=1,
        doc="open connections per process (then `unavailable`)",
    )
    trusted_proxies: tuple[Network, ...] = setting(
        env="TRUSTED_PROXIES",
        default=(),
        read=_Reader.networks,
        doc="CIDRs whose `X-Forwarded-For` is believed for the client IP",
    )
    ping_interval: float = setting(
        env="PING_INTERVAL",
        default=25.0,
        low=1.0,
        high=29.0,
        doc="Engine.IO heartbeat seconds (interval must stay under 30 for Heroku)",
    )
    ping_timeout: float = setting(
        env="PING_TIMEOUT", default=20.0, low=1.0, high=120.0, row="PING_INTERVAL"
    )
    commit_delay: float = setting(
        env="COMMIT_DELAY",
        default=DEFAULT_COMMIT_DELAY,
        low=0.0,
        high=0.1,
        doc="seconds between group commits while the process is busy (60 % of a core or more), "
        "so that more messages share one commit and its fsync; an idle process commits at once "
        "([operations](docs/operations.md#processes-and-state)); `0`: never wait",
    )
    sqlite_busy_timeout: float = setting(
        env="SQLITE_BUSY_TIMEOUT",
        default=30.0,
        low=0.0,
        high=600.0,
        doc="SQLite only: seconds a write waits for a lock another process holds (a backup, an "
        "operator's `sqlite3` shell) before the service answers `unavailable` "
        "([outages](docs/operations.md))",
    )
    """Seconds a SQLite write waits for another process's lock before `unavailable`."""
    gc_freeze_interval: float = setting(
        env="GC_FREEZE_INTERVAL",
        default=1.0,
        low=0.0,
        high=3600.0,
        doc="seconds between the garbage collector's freeze steps: objects created since the last "
        "step are collected and the survivors frozen, so full collections no longer scan the held "
        "connections ([operations](docs/operations.md#garbage-collection)); `0`: CPython's "
        "default collector",
    )
    """Seconds between GC freeze steps (socketsvc.runtime.gcpolicy); 0: CPython's default
    collector."""
    gc_full_growth: float = setting(
        env="GC_FULL_GROWTH",
        default=25.0,
        low=1.0,
        high=1000.0,
        doc="% growth of the interpreter's memory blocks since the last full collection that "
        "triggers the next one (unfreeze and collect everything: ~1-1.5 s at 10,000 connections); "
        "bounds the memory that closed connections' frozen garbage can hold (at least 250,000 "
        "blocks of growth, some 20 MB, so that a small process does not collect every few "
        "seconds while it warms up)",
    )
    """Growth of the memory blocks since the last full collection, in %, that triggers the next."""
    log_level: str = setting(
        env="LOG_LEVEL",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        doc="`DEBUG`, `INFO`, `WARNING`, `ERROR`",
    )
    log_format: str = setting(
        env="LOG_FORMAT",
        default="text",
        choices=("text", "json"),
        doc="`json`: one JSON object per line, with `conversation_id` where there is one",
    )
    dev_mode: bool = setting(
        env="DEV_MODE",
        default=False,
        doc="enables `POST /dev/agent-token` (the console's dev sign-in button); never in "
        "production",
    )

    @property
    def bot_workers(self) -> str | None:
        """The external bot's name when `BOT=workers:NAME`, else None."""
        return self.bot.removeprefix("workers:") if self.bot.startswith("workers:") else None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: `os.environ`)."""
        reader = _Reader(os.environ if env is None else env)
        for attr in (*(s.attr for s in SETTINGS if not s.last), *_BY_ATTR, *_DERIVED_READERS):
            reader.value(attr)
        return cls(**reader.values)


def _declared(cls: type[Any]) -> tuple[Setting, ...]:
    """Every `setting(...)` of `cls`, completed with its field's name, type and default.

    Refuses (at import) a field declared with neither `setting` nor `derived`, a type no reader
    reads, a row shared with no earlier setting, and a variable declared twice.
    """
    hints = typing.get_type_hints(cls)
    plain_types: tuple[Any, ...] = (bool, int, float, str, str | None)
    declared: list[Setting] = []
    for f in dataclasses.fields(cls):
        if _DERIVED in f.metadata:
            continue
        if _SETTING not in f.metadata:
            raise TypeError(f"Settings.{f.name} is declared with neither setting() nor derived()")
        spec = dataclasses.replace(
            f.metadata[_SETTING], attr=f.name, type=hints[f.name], default=f.default
        )
        if spec.read is None and spec.type not in plain_types:
            raise TypeError(f"Settings.{f.name}: no reader for {spec.type}; pass read=")
        if (spec.row is None and not spec.doc) or "|" in spec.doc:
            raise TypeError(f"Settings.{f.name}: doc must be set and hold no '|'")
        if spec.row is not None and spec.row not in {s.env for s in declared if s.row is None}:
            raise TypeError(f"Settings.{f.name}: row {spec.row} is no earlier setting's")
        if spec.env in {s.env for s in declared}:
            raise TypeError(f"Settings.{f.name}: {spec.env} is declared twice")
        declared.append(spec)
    return tuple(declared)


SETTINGS = _declared(Settings)
"""Every setting, in the order of the README's table."""
_BY_ATTR = {s.attr: s for s in SETTINGS}
_DERIVED_READERS: dict[str, Callable[[_Reader], Any]] = {
    f.name: f.metadata[_DERIVED] for f in dataclasses.fields(Settings) if _DERIVED in f.metadata
}


def markdown_table() -> str:
    """The README's configuration table (between its settings markers), from `SETTINGS`."""
    lines = [
        "<!-- generated from socketsvc/settings.py by `socketsvc settings --markdown` -->",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for first in (s for s in SETTINGS if s.row is None):
        row = [first, *(s for s in SETTINGS if s.row == first.env)]
        defaults = list(dict.fromkeys(s.shown_default() for s in row))
        names = " / ".join(f"`{s.env}`" for s in row)
        lines.append(f"| {names} | {' / '.join(defaults)} | {first.doc} |")
    return "\n".join(lines) + "\n"


def plain_list() -> str:
    """One line per variable: its default and the values it accepts (for `--help`)."""
    width = max(len(s.env) for s in SETTINGS) + 2
    lines = []
    for s in SETTINGS:
        default = s.shown_default().replace("`", "")
        accepted = s.accepted()
        lines.append(f"  {s.env:<{width}}{default}" + (f"; {accepted}" if accepted else ""))
    return "\n".join(lines) + "\n"


def readme_table(readme: str) -> str:
    """What `readme` holds between the settings markers ("" without them)."""
    start, end = readme.find(TABLE_START), readme.find(TABLE_END)
    if start < 0 or end < start:
        return ""
    return readme[start + len(TABLE_START) : end].strip("\n") + "\n"


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
