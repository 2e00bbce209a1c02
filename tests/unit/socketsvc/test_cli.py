"""The `socketsvc` command: help, minting agent tokens, refusing bad settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from socketsvc import __version__
from socketsvc.cli import main
from socketsvc.domain.errors import Unauthorized
from socketsvc.domain.tokens import AgentIdentity, TokenService
from socketsvc.settings import SECRET_FILE

SECRET = "cli-test-secret-0123456789abcdef-0000"
SETTINGS_VARS = (
    "PORT",
    "HOST",
    "DATABASE_URL",
    "REDIS_URL",
    "SOCKETSVC_SECRET",
    "ALLOWED_ORIGINS",
    "MAX_TEXT_LENGTH",
    "VISITOR_TOKEN_TTL",
    "BOT",
    "BOT_KB_PATH",
    "BOT_DELAY",
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "AGENT_GRACE_SECONDS",
    "DEV_MODE",
    "AGENT_JWT_ALGORITHM",
    "AGENT_JWT_AUDIENCE",
    "AGENT_JWT_ISSUER",
    "AGENT_JWT_PUBLIC_KEY",
    "IDENTITY_SECRET",
    "CONNECT_RATE",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "MESSAGE_BURST",
    "MESSAGE_RATE",
    "REDIS_CHANNEL",
    "TRUSTED_PROXIES",
    "COMMIT_DELAY",
    "GC_FREEZE_INTERVAL",
    "GC_FULL_GROWTH",
)


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m socketsvc ARGS` in `tmp_path` with only `env` of the service's settings set."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    return subprocess.run(
        [sys.executable, "-m", "socketsvc", *args],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """For in-process `main()`: no settings in the environment, cwd in `tmp_path`."""
    for name in SETTINGS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_help_describes_the_commands_and_the_environment(tmp_path: Path) -> None:
    done = run(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("usage: socketsvc")
    assert "environment variables" in out
    for name in ("PORT", "DATABASE_URL", "REDIS_URL", "SOCKETSVC_SECRET", "ALLOWED_ORIGINS"):
        assert name in out
    assert "serve" in out
    assert "token" in out
    assert "/chat" in out and "/agent" in out


def test_top_level_help_mentions_token_agent(tmp_path: Path) -> None:
    done = run(tmp_path, "--help")
    assert done.returncode == 0
    assert "token agent" in done.stdout


def test_token_help_lists_agent_and_its_options(tmp_path: Path) -> None:
    token = run(tmp_path, "token", "--help")
    assert token.returncode == 0, token.stderr
    assert "agent" in token.stdout
    assert "SOCKETSVC_SECRET" in token.stdout
    agent = run(tmp_path, "token", "agent", "--help")
    assert agent.returncode == 0, agent.stderr
    for option in ("--id", "--name", "--ttl"):
        assert option in agent.stdout


def test_token_agent_prints_a_verifiable_jwt(tmp_path: Path) -> None:
    done = run(tmp_path, "token", "agent", "--id", "a1", "--name", "Alice", SOCKETSVC_SECRET=SECRET)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0]
    assert token.count(".") == 2
    assert TokenService(SECRET, 60).verify_agent(token) == AgentIdentity("a1", "Alice")
    with pytest.raises(Unauthorized):
        TokenService("another-secret-0123456789abcdef-000", 60).verify_agent(token)
    assert not (tmp_path / SECRET_FILE).exists()


def test_bad_setting_exits_2_naming_it(tmp_path: Path) -> None:
    done = run(tmp_path, "token", "agent", "--id", "a1", "--name", "Alice", PORT="abc")
    assert done.returncode == 2
    assert "PORT" in done.stderr
    assert "abc" in done.stderr
    assert done.stdout == ""


def test_bad_setting_stops_serve_before_listening(tmp_path: Path) -> None:
    done = run(tmp_path, SOCKETSVC_SECRET=SECRET, PORT="abc")
    assert done.returncode == 2
    assert "PORT" in done.stderr
    assert "listening" not in done.stderr


# in-process -------------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == 0
    assert capsys.readouterr().out.strip() == f"socketsvc {__version__}"


def test_token_agent_ttl(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import jwt

    monkeypatch.setenv("SOCKETSVC_SECRET", SECRET)
    assert main(["token", "agent", "--id", "a2", "--name", "Bob", "--ttl", "90"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["name"], claims["role"]) == ("a2", "Bob", "agent")
    assert claims["exp"] - claims["iat"] == 90


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_token_agent_refuses_non_positive_ttl(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ttl: str,
) -> None:
    monkeypatch.setenv("SOCKETSVC_SECRET", SECRET)
    assert main(["token", "agent", "--id", "a2", "--name", "Bob", "--ttl", ttl]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--ttl" in captured.err


def test_token_agent_without_secret_uses_the_generated_one(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "agent", "--id", "a3", "--name", "Cy"]) == 0
    token = capsys.readouterr().out.strip()
    secret = (clean_env / SECRET_FILE).read_text().strip()
    assert TokenService(secret, 60).verify_agent(token) == AgentIdentity("a3", "Cy")


@pytest.mark.parametrize(
    "args",
    [["token", "agent", "--id", "a1"], ["token", "agent", "--name", "A"], ["token"]],
    ids=["no-name", "no-id", "no-kind"],
)
def test_token_usage_errors_exit_2(
    clean_env: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(args)
    assert raised.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_short_secret_is_a_configuration_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SOCKETSVC_SECRET", "short")
    assert main(["token", "agent", "--id", "a1", "--name", "A"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "configuration error" in captured.err and "SOCKETSVC_SECRET" in captured.err
