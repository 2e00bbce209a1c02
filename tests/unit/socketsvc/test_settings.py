"""`Settings.from_env`: defaults, every variable parsed, bad values refused by name, the secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from socketsvc.settings import SECRET_FILE, Settings, SettingsError

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
