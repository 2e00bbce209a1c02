"""Shared fixtures: real databases (SQLite file, PostgreSQL), the app in-process, the service as a
subprocess, and a Socket.IO test client."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from socketsvc.settings import Settings
from socketsvc.storage.store import Store
from tests.support.chat_client import ChatClient
from tests.support.domain import Domain, open_domain
from tests.support.tokens import SECRET

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
GENEROUS_LIMITS = {
    # Tests open many connections from 127.0.0.1 and send fast; abuse limits are tested
    # on their own with the defaults or tight values.
    "CONNECT_RATE": "100000",
    "MAX_CONNECTIONS_PER_IP": "100000",
    "MESSAGE_RATE": "1000",
    "MESSAGE_BURST": "1000",
}


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


async def _create_pg_database() -> str:
    name = f"socketsvc_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()
    return name


async def _drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chat.sqlite3'}"
        return
    name = asyncio.run(_create_pg_database())
    try:
        yield _pg_url(name)
    finally:
        asyncio.run(_drop_pg_database(name))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A `Store` opened on `database_url` (both kinds), closed after the test."""
    opened = await Store.open(database_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file (for the unit tests of the domain: no PostgreSQL parameter)."""
    return f"sqlite:///{tmp_path / 'domain.sqlite3'}"


@pytest.fixture
async def domain(sqlite_url: str) -> AsyncIterator[Domain]:
    """The domain services over a real SQLite store, publishing into a `RecordingBroadcaster`
    (`domain.broadcast`); the bot is `EchoBot`. Background work must be over at the end."""
    async with open_domain(sqlite_url) as built:
        yield built


def make_settings(database_url: str, **overrides: Any) -> Settings:
    env = {
        "DATABASE_URL": database_url,
        "SOCKETSVC_SECRET": SECRET,
        "PORT": "0",
        "HOST": "127.0.0.1",
        **GENEROUS_LIMITS,
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return Settings.from_env(env)


class AppServer:
    """The app served in this test's event loop on an ephemeral port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        from socketsvc.app import create_app

        self.app = create_app(self.settings)
        self.runner = web.AppRunner(self.app, shutdown_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def app_server(database_url: str) -> AsyncIterator[AppServer]:
    server = AppServer(make_settings(database_url, BOT="kb"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def start_app(database_url: str) -> AsyncIterator[Any]:
    """`await start_app(**env)`: the app with extra settings (e.g. BOT_DELAY=1), stopped after."""
    started: list[AppServer] = []

    async def start(**overrides: Any) -> AppServer:
        server = AppServer(make_settings(database_url, **overrides))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def clients() -> AsyncIterator[list[ChatClient]]:
    """Collects the clients a test opens and disconnects them at the end."""
    opened: list[ChatClient] = []
    yield opened
    for client in opened:
        await client.close()


class ServiceProcess:
    """`python -m socketsvc` as a real subprocess (for kill -9, restarts and Node clients)."""

    LISTENING = re.compile(r"listening on http://[^:]+:(\d+)")

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log: list[str] = []
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> None:
        env = {**os.environ, **self.env, "PORT": str(port), "HOST": "127.0.0.1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "socketsvc"],
            cwd=self.cwd,
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            found = self.LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
                break
        else:
            raise RuntimeError("service exited before listening:\n" + "".join(self.log))
        # Keep draining stderr so the pipe never fills up.
        stream = self.proc.stderr
        self._drain = threading.Thread(target=lambda: self.log.extend(stream), daemon=True)
        self._drain.start()

    def _reap(self) -> None:
        if self.proc is not None and self.proc.stderr is not None:
            if self._drain is not None:
                self._drain.join(timeout=5)
            self.proc.stderr.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self._reap()

    def stop(self) -> int | None:
        """SIGTERM, then the exit code (SIGKILL after 15 s)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._reap()
        return self.proc.returncode


@pytest.fixture
def live_server(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ServiceProcess]:
    """The service as a subprocess on an ephemeral port, over each kind of database; a test's
    `@pytest.mark.service_env(NAME=value)` adds settings."""
    marker = request.node.get_closest_marker("service_env")
    service = ServiceProcess(
        {
            "DATABASE_URL": database_url,
            "SOCKETSVC_SECRET": SECRET,
            "LOG_LEVEL": "INFO",
            **GENEROUS_LIMITS,
            **({k: str(v) for k, v in marker.kwargs.items()} if marker else {}),
        },
        cwd=tmp_path,
    )
    service.start()
    try:
        yield service
    finally:
        service.stop()
