"""The `socketsvc` command: help, minting agent tokens, refusing bad settings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from socketsvc import __version__
from socketsvc.cli import main
from socketsvc.domain.errors import Unauthorized
from socketsvc.domain.tokens import AgentIdentity, TokenService
from socketsvc.settings import SECRET_FILE, SETTINGS, markdown_table, plain_list

SECRET = "cli-test-secret-0123456789abcdef-0000"
SETTINGS_VARS = tuple(s.env for s in SETTINGS)


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


@pytest.mark.slow
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


@pytest.mark.slow  # runs the CLI as a process
def test_help_lists_every_setting_with_its_default(tmp_path: Path) -> None:
    done = run(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("environment variables (default; accepted values):\n")[1]
    listed = listed.split("\n\n")[0] + "\n"
    assert [line.split()[0] for line in listed.splitlines()] == list(SETTINGS_VARS)
    assert "  PORT                         8080; 0 to 65535\n" in listed
    assert "  LOG_LEVEL                    INFO; DEBUG, INFO, WARNING, ERROR\n" in listed
    assert "  MESSAGE_BURST                30; at least 1\n" in listed
    assert "(default 0.0.0.0:8080)" in done.stdout


@pytest.mark.slow
def test_settings_prints_the_declarations_without_reading_them(tmp_path: Path) -> None:
    markdown = run(tmp_path, "settings", "--markdown", PORT="abc")
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout == markdown_table()
    assert markdown.stdout.count("\n| `") == 46
    plain = run(tmp_path, "settings", PORT="abc")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == plain_list()
    assert "VISITOR_TOKEN_TTL            2592000 (30 days); at least 60" in plain.stdout
    assert not (tmp_path / SECRET_FILE).exists()


@pytest.mark.slow  # runs the CLI as a process
def test_top_level_help_mentions_token_agent(tmp_path: Path) -> None:
    done = run(tmp_path, "--help")
    assert done.returncode == 0
    assert "token agent" in done.stdout


@pytest.mark.slow
def test_token_help_lists_agent_and_its_options(tmp_path: Path) -> None:
    token = run(tmp_path, "token", "--help")
    assert token.returncode == 0, token.stderr
    assert "agent" in token.stdout
    assert "SOCKETSVC_SECRET" in token.stdout
    agent = run(tmp_path, "token", "agent", "--help")
    assert agent.returncode == 0, agent.stderr
    for option in ("--id", "--name", "--ttl"):
        assert option in agent.stdout


@pytest.mark.slow  # runs the CLI as a process
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


@pytest.mark.slow  # runs the CLI as a process
def test_bad_setting_exits_2_naming_it(tmp_path: Path) -> None:
    done = run(tmp_path, "token", "agent", "--id", "a1", "--name", "Alice", PORT="abc")
    assert done.returncode == 2
    assert "PORT" in done.stderr
    assert "abc" in done.stderr
    assert done.stdout == ""


@pytest.mark.slow  # runs the CLI as a process
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


# migrate ----------------------------------------------------------------------------------------


def _set_revision(database_url: str, revision: str) -> None:
    """Overwrite alembic_version, as a newer release's migration would have left it."""
    from socketsvc.storage.database import create_engine

    async def run() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision}
                )
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_help_lists_migrate(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "socketsvc migrate" in out and "upgrade the database schema" in out


def test_migrate_creates_the_schema_then_is_a_no_op(
    database_url: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SOCKETSVC_SECRET", SECRET)
    assert main(["migrate"]) == 0
    created = capsys.readouterr().out
    assert created == "socketsvc migrate: schema created at revision 0003_bot_deliveries\n"
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    print(out)
    assert (
        out
        == "socketsvc migrate: schema up to date at revision 0003_bot_deliveries: nothing to do\n"
    )


def test_migrate_refuses_a_schema_newer_than_the_code(
    database_url: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SOCKETSVC_SECRET", SECRET)
    assert main(["migrate"]) == 0
    _set_revision(database_url, "0099_future")
    capsys.readouterr()
    assert main(["migrate"]) == 3
    err = capsys.readouterr().err
    assert "0099_future, newer than this code" in err and "deploy the newer socketsvc" in err


@pytest.mark.slow
def test_serve_on_a_newer_schema_exits_with_the_message_not_a_traceback(
    database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "SOCKETSVC_SECRET": SECRET, "PORT": "0"}
    assert run(tmp_path, "migrate", **env).returncode == 0
    _set_revision(database_url, "0099_future")
    done = run(tmp_path, "serve", **env)
    print(done.stderr)
    assert done.returncode == 3
    assert "socketsvc: not starting: the database schema is at revision 0099_future" in done.stderr
    assert "deploy the newer socketsvc release, or downgrade" in done.stderr
    assert "Traceback" not in done.stderr
    assert "listening on" not in done.stderr


# visitor export / delete --------------------------------------------------------------------------


def _seed(database_url: str) -> None:
    """Visitors v1 (a conversation: greeting, a message, its read mark) and v2 (one greeting)."""
    from socketsvc.domain.models import Role, Sender
    from socketsvc.storage.store import Store

    async def run() -> None:
        store = await Store.open(database_url)
        try:
            bot = Sender(Role.BOT, "bot", "Bot")
            for vid in ("v1", "v2"):
                await store.ensure_visitor(vid, f"Visitor {vid}")
                created = await store.create_conversation(vid, (bot, "Hello!"), f"c-{vid}")
                assert created.conversation.id == f"c-{vid}"
            v1 = Sender(Role.VISITOR, "v1", "Visitor v1")
            assert await store.append_message("c-v1", v1, "my email is a@example.com", "m1")
            await store.mark_read("c-v1", v1, 2)
        finally:
            await store.close()

    asyncio.run(run())


def test_help_lists_the_visitor_commands(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "socketsvc visitor export ID" in out and "socketsvc visitor delete ID" in out


def test_visitor_export_then_delete(
    sqlite_url: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("SOCKETSVC_SECRET", SECRET)
    _seed(sqlite_url)
    capsys.readouterr()
    assert main(["visitor", "export", "v1"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["visitor"]["id"] == "v1" and exported["visitor"]["name"] == "Visitor v1"
    (conversation,) = exported["conversations"]
    assert conversation["id"] == "c-v1" and conversation["state"] == "bot"
    assert [(m["seq"], m["sender"]["role"], m["text"]) for m in conversation["messages"]] == [
        (1, "bot", "Hello!"),
        (2, "visitor", "my email is a@example.com"),
    ]
    assert [(r["role"], r["id"], r["seq"]) for r in conversation["read_marks"]] == [
        ("visitor", "v1", 2)
    ]
    assert {"created_at", "updated_at"} <= set(conversation)

    assert main(["visitor", "delete", "v1"]) == 0
    deleted = json.loads(capsys.readouterr().out)
    assert deleted == {
        "erased": "v1",
        "deleted": {"conversations": 1, "messages": 2, "read_marks": 1, "visitors": 1},
    }
    assert main(["visitor", "export", "v1"]) == 1
    assert "no visitor v1" in capsys.readouterr().err
    assert main(["visitor", "delete", "v1"]) == 1
    capsys.readouterr()
    assert main(["visitor", "export", "v2"]) == 0  # the other visitor is untouched
    assert len(json.loads(capsys.readouterr().out)["conversations"][0]["messages"]) == 1


def test_visitor_commands_need_an_id(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("export", "delete"):
        with pytest.raises(SystemExit) as exited:
            main(["visitor", action])
        assert exited.value.code == 2
    assert "ID" in capsys.readouterr().err


@pytest.mark.slow  # runs the CLI as a process
def test_bot_openai_without_its_endpoint_refuses_to_serve(tmp_path: Path) -> None:
    done = run(tmp_path, SOCKETSVC_SECRET=SECRET, BOT="openai", LLM_API_KEY="k")
    assert done.returncode == 2
    assert "BOT=openai needs LLM_BASE_URL and LLM_MODEL" in done.stderr
    assert "listening" not in done.stderr
