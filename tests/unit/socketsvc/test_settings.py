"""`Settings.from_env`: defaults, every variable parsed, bad values refused by name, the secret;
the declarations and the README's table generated from them."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from socketsvc.settings import (
    SECRET_FILE,
    SETTINGS,
    TABLE_START,
    Setting,
    Settings,
    SettingsError,
    _declared,
    markdown_table,
    readme_table,
    setting,
)

SECRET = "s" * 40


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own empty directory: a generated secret file lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def read(**env: str) -> Settings:
    """Settings from `env` plus a valid secret (unless the test sets its own)."""
    return Settings.from_env({"SOCKETSVC_SECRET": SECRET, **env})


def test_defaults(in_tmp: Path) -> None:
    settings = Settings.from_env({})
    assert settings.host == "0.0.0.0"
    assert settings.port == 8080
    assert settings.database_url == "sqlite:///socketsvc.sqlite3"
    assert settings.is_sqlite is True
    assert settings.redis_url is None
    assert settings.allowed_origins is None
    assert settings.max_text_length == 4000
    assert settings.visitor_token_ttl == 30 * 24 * 3600
    assert settings.bot == "kb"
    assert settings.bot_kb_path is None
    assert settings.bot_delay == 0.0
    assert settings.ping_interval == 25.0
    assert settings.ping_timeout == 20.0
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"
    assert settings.agent_grace_seconds == 60.0
    assert settings.dev_mode is False
    # No SOCKETSVC_SECRET: one is generated beside the default database, in the cwd.
    assert settings.secret_source == SECRET_FILE
    assert (in_tmp / SECRET_FILE).read_text().strip() == settings.secret


def test_blank_values_mean_the_default() -> None:
    settings = read(PORT="  ", HOST="", BOT="", LOG_LEVEL=" ", DEV_MODE="", ALLOWED_ORIGINS=" ")
    assert settings.port == 8080
    assert settings.host == "0.0.0.0"
    assert settings.bot == "kb"
    assert settings.log_level == "INFO"
    assert settings.dev_mode is False
    assert settings.allowed_origins is None


def test_secret_from_env_is_used_and_not_shown(in_tmp: Path) -> None:
    settings = read()
    assert settings.secret == SECRET
    assert settings.secret_source == "env"
    assert SECRET not in repr(settings)
    assert not (in_tmp / SECRET_FILE).exists()


@pytest.mark.parametrize(
    ("env", "attribute", "expected"),
    [
        ({"PORT": "0"}, "port", 0),
        ({"PORT": " 9000 "}, "port", 9000),
        ({"PORT": "65535"}, "port", 65535),
        ({"HOST": "127.0.0.1"}, "host", "127.0.0.1"),
        ({"HOST": "::"}, "host", "::"),
        ({"DATABASE_URL": "sqlite:///data/chat.db"}, "database_url", "sqlite:///data/chat.db"),
        ({"DATABASE_URL": "sqlite:////var/lib/x.db"}, "database_url", "sqlite:////var/lib/x.db"),
        (
            {"DATABASE_URL": "postgresql://u:p@db:5432/chat"},
            "database_url",
            "postgresql://u:p@db:5432/chat",
        ),
        ({"DATABASE_URL": "postgres://u@db/chat"}, "database_url", "postgres://u@db/chat"),
        (
            {"DATABASE_URL": "postgresql://db/chat", "REDIS_URL": "redis://r:6379/0"},
            "redis_url",
            "redis://r:6379/0",
        ),
        (
            {"DATABASE_URL": "postgresql://db/chat", "REDIS_URL": "rediss://r:6380"},
            "redis_url",
            "rediss://r:6380",
        ),
        (
            {"DATABASE_URL": "postgresql://db/chat", "REDIS_URL": "unix:///tmp/redis.sock"},
            "redis_url",
            "unix:///tmp/redis.sock",
        ),
        ({"SOCKETSVC_SECRET": "k" * 32}, "secret", "k" * 32),
        (
            {"ALLOWED_ORIGINS": "https://shop.example.com, http://localhost:3000/"},
            "allowed_origins",
            ("https://shop.example.com", "http://localhost:3000"),
        ),
        ({"ALLOWED_ORIGINS": "*"}, "allowed_origins", ("*",)),
        ({"ALLOWED_ORIGINS": "https://a.example,"}, "allowed_origins", ("https://a.example",)),
        ({"MAX_TEXT_LENGTH": "1"}, "max_text_length", 1),
        ({"MAX_TEXT_LENGTH": "16000"}, "max_text_length", 16000),
        ({"VISITOR_TOKEN_TTL": "60"}, "visitor_token_ttl", 60),
        ({"VISITOR_TOKEN_TTL": "86400"}, "visitor_token_ttl", 86400),
        ({"BOT": "echo"}, "bot", "echo"),
        ({"BOT": "my_pkg.bots:make"}, "bot", "my_pkg.bots:make"),
        ({"BOT": "workers:helper"}, "bot", "workers:helper"),
        ({"BOT": "workers:helper"}, "bot_workers", "helper"),
        (
            {"BOT_KEYS": "a:0123456789abcdef,b.2:fedcba9876543210"},
            "bot_keys",
            (("a", "0123456789abcdef"), ("b.2", "fedcba9876543210")),
        ),
        ({"BOT_FALLBACK": "Queue"}, "bot_fallback", "queue"),
        ({"BOT_TIMEOUT": "0.5"}, "bot_timeout", 0.5),
        ({"BOT_REDELIVERY_TIMEOUT": "2"}, "bot_redelivery_timeout", 2.0),
        ({"BOT_KB_PATH": "/etc/socketsvc/kb.json"}, "bot_kb_path", "/etc/socketsvc/kb.json"),
        ({"BOT_DELAY": "0.25"}, "bot_delay", 0.25),
        ({"BOT_DELAY": "60"}, "bot_delay", 60.0),
        ({"COMMIT_DELAY": "0"}, "commit_delay", 0.0),
        ({"COMMIT_DELAY": "0.005"}, "commit_delay", 0.005),
        ({"PING_INTERVAL": "10"}, "ping_interval", 10.0),
        ({"PING_INTERVAL": "29"}, "ping_interval", 29.0),
        ({"PING_TIMEOUT": "5.5"}, "ping_timeout", 5.5),
        ({"PING_TIMEOUT": "120"}, "ping_timeout", 120.0),
        ({"LOG_LEVEL": "debug"}, "log_level", "DEBUG"),
        ({"LOG_LEVEL": "Warning"}, "log_level", "WARNING"),
        ({"LOG_LEVEL": "ERROR"}, "log_level", "ERROR"),
        ({"LOG_FORMAT": "json"}, "log_format", "json"),
        ({"LOG_FORMAT": "JSON"}, "log_format", "json"),
        ({"LOG_FORMAT": "text"}, "log_format", "text"),
        ({"AGENT_GRACE_SECONDS": "0"}, "agent_grace_seconds", 0.0),
        ({"AGENT_GRACE_SECONDS": "2.5"}, "agent_grace_seconds", 2.5),
        ({"DEV_MODE": "1"}, "dev_mode", True),
        ({"DEV_MODE": "true"}, "dev_mode", True),
        ({"DEV_MODE": "YES"}, "dev_mode", True),
        ({"DEV_MODE": "on"}, "dev_mode", True),
        ({"DEV_MODE": "0"}, "dev_mode", False),
        ({"DEV_MODE": "False"}, "dev_mode", False),
        ({"DEV_MODE": "no"}, "dev_mode", False),
        ({"DEV_MODE": "off"}, "dev_mode", False),
    ],
)
def test_each_variable_is_parsed(env: dict[str, str], attribute: str, expected: object) -> None:
    settings = read(**env)
    value = getattr(settings, attribute)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("url", "is_sqlite"),
    [
        ("sqlite:///chat.db", True),
        ("postgresql://db/chat", False),
        ("postgres://db/chat", False),
    ],
)
def test_is_sqlite(url: str, is_sqlite: bool) -> None:
    assert read(DATABASE_URL=url).is_sqlite is is_sqlite


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "80.5"),
        ("PORT", "-1"),
        ("PORT", "65536"),
        ("DATABASE_URL", "mysql://db/chat"),
        ("DATABASE_URL", "sqlite://chat.db"),
        ("DATABASE_URL", "chat.sqlite3"),
        ("DATABASE_URL", "postgresql+asyncpg://db/chat"),
        ("REDIS_URL", "http://redis:6379"),
        ("REDIS_URL", "localhost:6379"),
        ("SOCKETSVC_SECRET", "too-short"),
        ("SOCKETSVC_SECRET", "x" * 31),
        ("ALLOWED_ORIGINS", "example.com"),
        ("ALLOWED_ORIGINS", "ftp://example.com"),
        ("ALLOWED_ORIGINS", "https://example.com/path"),
        ("ALLOWED_ORIGINS", "https://"),
        ("ALLOWED_ORIGINS", "*,https://example.com"),
        ("MAX_TEXT_LENGTH", "0"),
        ("MAX_TEXT_LENGTH", "16001"),
        ("MAX_TEXT_LENGTH", "ten"),
        ("VISITOR_TOKEN_TTL", "59"),
        ("VISITOR_TOKEN_TTL", "1h"),
        ("BOT", "workers:"),
        ("BOT", "workers:bad name"),
        ("BOT_KEYS", "helper"),
        ("BOT_KEYS", "helper:short"),
        ("BOT_KEYS", ":0123456789abcdef"),
        ("BOT_FALLBACK", "echo"),
        ("BOT_TIMEOUT", "0"),
        ("BOT_REDELIVERY_TIMEOUT", "0.1"),
        ("BOT_DELAY", "-0.1"),
        ("BOT_DELAY", "61"),
        ("BOT_DELAY", "nan"),
        ("BOT_DELAY", "soon"),
        ("COMMIT_DELAY", "-0.001"),
        ("COMMIT_DELAY", "0.2"),
        ("COMMIT_DELAY", "2ms"),
        ("PING_INTERVAL", "0.5"),
        ("PING_INTERVAL", "30"),
        ("PING_INTERVAL", "25s"),
        ("PING_TIMEOUT", "0"),
        ("PING_TIMEOUT", "121"),
        ("LOG_LEVEL", "TRACE"),
        ("LOG_LEVEL", "CRITICAL"),
        ("LOG_FORMAT", "xml"),
        ("AGENT_GRACE_SECONDS", "-1"),
        ("AGENT_GRACE_SECONDS", "nan"),
        ("AGENT_GRACE_SECONDS", "a minute"),
        ("DEV_MODE", "maybe"),
        ("DEV_MODE", "2"),
    ],
)
def test_bad_value_raises_settings_error_naming_the_variable(variable: str, value: str) -> None:
    env = {"SOCKETSVC_SECRET": SECRET, "DATABASE_URL": "postgresql://db/chat", variable: value}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert variable in str(raised.value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("database_url", ["sqlite:///chat.db", "sqlite:////tmp/x.sqlite3"])
def test_redis_with_sqlite_is_refused(database_url: str) -> None:
    with pytest.raises(SettingsError, match="REDIS_URL") as raised:
        read(DATABASE_URL=database_url, REDIS_URL="redis://r:6379")
    assert "DATABASE_URL" in str(raised.value)


def test_redis_with_default_database_is_refused() -> None:
    with pytest.raises(SettingsError, match="REDIS_URL"):
        read(REDIS_URL="redis://r:6379")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:"])
def test_sqlite_url_without_a_file_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        read(DATABASE_URL=url)


def test_allowed_origins_without_any_origin_is_refused() -> None:
    with pytest.raises(SettingsError, match="ALLOWED_ORIGINS"):
        read(ALLOWED_ORIGINS=" , ")


# generated secret -------------------------------------------------------------------------


def test_generated_secret_file_beside_the_sqlite_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db/x.sqlite3"
    first = Settings.from_env({"DATABASE_URL": url})
    path = tmp_path / "db" / SECRET_FILE
    assert first.secret_source == str(path)
    assert path.is_file()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().strip() == first.secret
    assert len(first.secret.encode()) >= 32

    second = Settings.from_env({"DATABASE_URL": url})
    assert second.secret == first.secret
    assert second.secret_source == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_generated_secret_differs_per_database_directory(tmp_path: Path) -> None:
    one = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/a/x.sqlite3"})
    two = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/b/x.sqlite3"})
    assert one.secret != two.secret


def test_generated_secret_for_a_relative_sqlite_path_is_relative_to_the_cwd(in_tmp: Path) -> None:
    settings = Settings.from_env({"DATABASE_URL": "sqlite:///data/chat.sqlite3"})
    assert settings.secret_source == str(Path("data") / SECRET_FILE)
    assert (in_tmp / "data" / SECRET_FILE).read_text().strip() == settings.secret


def test_generated_secret_for_postgres_lives_in_the_cwd(in_tmp: Path) -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql://db/chat"})
    assert settings.secret_source == SECRET_FILE
    assert (in_tmp / SECRET_FILE).read_text().strip() == settings.secret
    assert stat.S_IMODE(os.stat(in_tmp / SECRET_FILE).st_mode) == 0o600


def test_existing_secret_file_is_reused(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE).write_text("p" * 40 + "\n")
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})
    assert settings.secret == "p" * 40
    assert settings.secret_source == str(tmp_path / SECRET_FILE)


@pytest.mark.parametrize("content", ["", "short\n"])
def test_unusable_secret_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / SECRET_FILE).write_text(content)
    with pytest.raises(SettingsError, match="SOCKETSVC_SECRET") as raised:
        Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"})
    assert str(tmp_path / SECRET_FILE) in str(raised.value)


# declarations and the README -------------------------------------------------------------

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_table_is_the_generated_one() -> None:
    assert readme_table(README.read_text()) == markdown_table(), (
        "README.md's configuration table differs from the declarations in socketsvc/settings.py: "
        "paste the output of `socketsvc settings --markdown` between its settings markers"
    )


def test_readme_rows_and_declarations_name_the_same_variables() -> None:
    table = readme_table(README.read_text())
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    in_readme = [name for row in rows for name in re.findall(r"`([A-Z_]+)`", row)]
    assert sorted(in_readme) == sorted(s.env for s in SETTINGS)
    assert len(SETTINGS) == len({s.env for s in SETTINGS}) == 49


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace("| `8080` |", "| `8081` |"),
        lambda t: t.replace("address to bind", "address to listen on"),
        lambda t: "\n".join(line for line in t.splitlines() if "`DEV_MODE`" not in line),
        lambda t: t.replace(TABLE_START, ""),
    ],
    ids=["default", "doc", "row-missing", "no-markers"],
)
def test_an_edited_readme_table_is_told_apart(edit: Callable[[str], str]) -> None:
    readme = README.read_text()
    assert readme_table(readme) == markdown_table()
    assert readme_table(edit(readme)) != markdown_table()


def test_defaults_read_from_an_empty_environment_are_the_declared_ones() -> None:
    settings = read()
    declared = Settings(secret=SECRET)
    assert settings == declared
    for s in SETTINGS:
        if s.env != "SOCKETSVC_SECRET":
            assert getattr(settings, s.attr) == s.default == getattr(Settings, s.attr)


def test_the_table_shows_each_declared_default() -> None:
    table = markdown_table()
    assert "| `MESSAGE_RATE` / `MESSAGE_BURST` | `2` / `30` |" in table
    assert "| `PING_INTERVAL` / `PING_TIMEOUT` | `25` / `20` |" in table
    assert "| `AGENT_JWT_ISSUER` / `AGENT_JWT_AUDIENCE` | unset |" in table
    assert "| `COMMIT_DELAY` | `0.002` |" in table
    assert "| `DEV_MODE` | `false` |" in table


def _ranged() -> list[Setting]:
    return [s for s in SETTINGS if s.low is not None or s.high is not None]


@pytest.mark.parametrize("declared", _ranged(), ids=lambda s: s.env)
def test_each_declared_range_is_kept(declared: Setting) -> None:
    step = 1 if declared.type is int else 0.001
    for bound, outside in ((declared.low, -step), (declared.high, step)):
        if bound is None:
            continue
        at = read(DATABASE_URL="postgresql://db/chat", **{declared.env: str(bound)})
        assert getattr(at, declared.attr) == bound
        with pytest.raises(SettingsError, match=declared.env):
            read(DATABASE_URL="postgresql://db/chat", **{declared.env: str(bound + outside)})


def test_ranges_and_choices_are_declared() -> None:
    """The ranges as they were before the declarations (a change here is a change of behaviour)."""
    assert {s.env: (s.type, s.low, s.high) for s in _ranged()} == {
        "PORT": (int, 0, 65535),
        "MAX_TEXT_LENGTH": (int, 1, 16000),
        "VISITOR_TOKEN_TTL": (int, 60, None),
        "AGENT_GRACE_SECONDS": (float, 0.0, None),
        "RETENTION_DAYS": (int, 0, None),
        "BOT_DELAY": (float, 0.0, 60.0),
        "LLM_MAX_TOKENS": (int, 1, 32768),
        "LLM_TIMEOUT": (float, 1.0, 25.0),
        "BOT_WEBHOOK_RETRIES": (int, 0, 10),
        "BOT_WEBHOOK_ATTEMPT_TIMEOUT": (float, 0.1, 60.0),
        "BOT_TIMEOUT": (float, 0.1, 3600.0),
        "BOT_REDELIVERY_TIMEOUT": (float, 0.5, 3600.0),
        "MESSAGE_RATE": (float, 0.01, None),
        "MESSAGE_BURST": (float, 1.0, None),
        "CONNECT_RATE": (int, 1, None),
        "MAX_CONNECTIONS_PER_IP": (int, 1, None),
        "MAX_CONNECTIONS": (int, 1, None),
        "PING_INTERVAL": (float, 1.0, 29.0),
        "PING_TIMEOUT": (float, 1.0, 120.0),
        "COMMIT_DELAY": (float, 0.0, 0.1),
        "SQLITE_BUSY_TIMEOUT": (float, 0.0, 600.0),
        "GC_FREEZE_INTERVAL": (float, 0.0, 3600.0),
        "GC_FULL_GROWTH": (float, 1.0, 1000.0),
    }
    by_env = {s.env: s for s in SETTINGS}
    assert by_env["LOG_LEVEL"].choices == ("DEBUG", "INFO", "WARNING", "ERROR")
    assert by_env["LOG_FORMAT"].choices == ("text", "json")
    assert by_env["BOT_FALLBACK"].choices == ("kb", "queue")
    assert by_env["SOCKETSVC_SECRET"].attr == "secret"


def test_secret_file_is_not_written_when_another_setting_is_bad(in_tmp: Path) -> None:
    with pytest.raises(SettingsError, match="MAX_TEXT_LENGTH"):
        Settings.from_env({"MAX_TEXT_LENGTH": "0"})
    assert not (in_tmp / SECRET_FILE).exists()


def test_malformed_declarations_are_refused_at_import() -> None:
    @dataclass(frozen=True)
    class Undeclared:
        port: int = 8080

    @dataclass(frozen=True)
    class PipeInDoc:
        port: int = setting(env="PORT", default=8080, doc="a | b")

    @dataclass(frozen=True)
    class NoDoc:
        port: int = setting(env="PORT", default=8080)

    @dataclass(frozen=True)
    class RowOfNothing:
        port: int = setting(env="PORT", default=8080, row="HOST")

    @dataclass(frozen=True)
    class Twice:
        port: int = setting(env="PORT", default=8080, doc="port")
        other: int = setting(env="PORT", default=8080, doc="port")

    @dataclass(frozen=True)
    class NoReader:
        proxies: tuple[str, ...] = setting(env="PROXIES", default=(), doc="proxies")

    for cls in (Undeclared, PipeInDoc, NoDoc, RowOfNothing, Twice, NoReader):
        with pytest.raises(TypeError):
            _declared(cls)

    @dataclass(frozen=True)
    class Fine:
        port: int = setting(env="PORT", default=8080, doc="port")
        other: float = setting(env="OTHER", default=1.0, row="PORT")

    assert [(s.env, s.attr, s.type, s.default) for s in _declared(Fine)] == [
        ("PORT", "port", int, 8080),
        ("OTHER", "other", float, 1.0),
    ]


def test_retention_days_and_admin_token(in_tmp: Path) -> None:
    default = Settings.from_env({})
    assert default.retention_days == 0 and default.admin_token is None
    assert Settings.from_env({"RETENTION_DAYS": "30"}).retention_days == 30
    with pytest.raises(SettingsError, match="RETENTION_DAYS"):
        Settings.from_env({"RETENTION_DAYS": "-1"})
    with pytest.raises(SettingsError, match="ADMIN_TOKEN must be at least 32 bytes"):
        Settings.from_env({"ADMIN_TOKEN": "short"})
    token = "a" * 32
    configured = Settings.from_env({"ADMIN_TOKEN": token})
    assert configured.admin_token == token and token not in repr(configured)


def test_llm_settings() -> None:
    settings = read(
        BOT="openai",
        LLM_BASE_URL="http://localhost:11434/v1",
        LLM_MODEL="llama3.2",
        LLM_API_KEY="sk-secret-key",
        LLM_MAX_TOKENS="64",
        LLM_TIMEOUT="5",
        LLM_SYSTEM_PROMPT="Be brief.",
    )
    assert (settings.llm_base_url, settings.llm_model) == ("http://localhost:11434/v1", "llama3.2")
    assert (settings.llm_max_tokens, settings.llm_timeout) == (64, 5.0)
    assert settings.llm_system_prompt == "Be brief." and "sk-secret-key" not in repr(settings)
    assert read().llm_model is None  # only BOT=openai needs them


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "LLM_BASE_URL and LLM_MODEL"),
        ({"LLM_MODEL": "m"}, "LLM_BASE_URL"),
        ({"LLM_BASE_URL": "http://x/v1"}, "LLM_MODEL"),
    ],
)
def test_bot_openai_names_the_missing_settings(env: dict[str, str], missing: str) -> None:
    with pytest.raises(SettingsError, match=f"^BOT=openai needs {missing}$"):
        read(BOT="openai", **env)


def test_llm_base_url_must_be_http() -> None:
    with pytest.raises(SettingsError, match="LLM_BASE_URL must be an http"):
        read(BOT="openai", LLM_BASE_URL="localhost:11434", LLM_MODEL="m")


def test_webhook_settings() -> None:
    settings = read(
        BOT="webhook",
        BOT_WEBHOOK_URL="https://bots.example.com/hook",
        BOT_WEBHOOK_SECRET="whsec-0123456789abcdef",
        BOT_WEBHOOK_RETRIES="0",
        BOT_WEBHOOK_ATTEMPT_TIMEOUT="1.5",
    )
    assert settings.bot_webhook_url == "https://bots.example.com/hook"
    assert (settings.bot_webhook_retries, settings.bot_webhook_attempt_timeout) == (0, 1.5)
    assert settings.bot_webhook_secret == "whsec-0123456789abcdef"
    assert "whsec-0123456789abcdef" not in repr(settings)
    defaults = read()
    assert defaults.bot_webhook_url is None and defaults.bot_webhook_secret is None
    assert (defaults.bot_webhook_retries, defaults.bot_webhook_attempt_timeout) == (3, 5.0)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "BOT_WEBHOOK_URL and BOT_WEBHOOK_SECRET"),
        ({"BOT_WEBHOOK_SECRET": "s" * 16}, "BOT_WEBHOOK_URL"),
        ({"BOT_WEBHOOK_URL": "http://x/hook"}, "BOT_WEBHOOK_SECRET"),
    ],
)
def test_bot_webhook_names_the_missing_settings(env: dict[str, str], missing: str) -> None:
    with pytest.raises(SettingsError, match=f"^BOT=webhook needs {missing}$"):
        read(BOT="webhook", **env)


def test_webhook_url_must_be_http_and_the_secret_long_enough() -> None:
    with pytest.raises(SettingsError, match="BOT_WEBHOOK_URL must be an http"):
        read(BOT="webhook", BOT_WEBHOOK_URL="bots.example.com/hook", BOT_WEBHOOK_SECRET="s" * 16)
    with pytest.raises(SettingsError, match="BOT_WEBHOOK_SECRET must be at least 16 bytes"):
        read(BOT="webhook", BOT_WEBHOOK_URL="http://x/hook", BOT_WEBHOOK_SECRET="short")
