"""Outside the tested version ranges the service runs python-socketio's and python-engineio's
stock code paths, says so once per patch, and works: the real app on an ephemeral port, a real
python-socketio client over a WebSocket and over long-polling."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import engineio
import pytest
import socketio
from engineio import async_socket

from socketsvc.keys import REDIS, SIO
from socketsvc.transport import patches
from socketsvc.transport.pubsub import StockRedisManager
from tests.conftest import AppServer, make_settings
from tests.support.chat_client import ChatClient

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NEWER = {"python-engineio": "4.16.0", "python-socketio": "5.19.0", "aiohttp": "3.15.0"}


@pytest.fixture
def newer_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every patched dependency "installed" at a version just above its tested range."""
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: NEWER.get(name) or real(name))


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Any]:
    """`await start(database_url=None, **env)`: the app (SQLite by default), stopped after."""
    started: list[AppServer] = []

    async def run(database_url: str | None = None, **env: Any) -> AppServer:
        url = database_url or f"sqlite:///{tmp_path / 'stock.sqlite3'}"
        server = AppServer(make_settings(url, **env))
        await server.start()
        started.append(server)
        return server

    yield run
    for server in started:
        await server.stop()


async def exchange(url: str, transports: list[str]) -> None:
    client = ChatClient(url, transports=transports)
    try:
        await client.connect()
        await client.wait_for(lambda: client.of("session"), what="session")
        ack = await client.send("hello from the stock path")
        assert ack["ok"] is True, ack
        assert ack["message"]["text"] == "hello from the stock path"
        await client.wait_for(lambda: client.messages(), what="the message push")
    finally:
        await client.close()


@pytest.mark.slow  # the stock path holds a departing polling client's GET until its next ping
async def test_the_service_starts_on_the_stock_path_and_logs_each_patch(
    newer_releases: None, start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="socketsvc.transport.patches"):
        # A 1 s ping: the held GET ends within a second, not after the default 25 s.
        server = await start(PING_INTERVAL=1, PING_TIMEOUT=1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "socketsvc.transport.patches"]
    names = {p.name for p in patches.registry()}
    assert len(warnings) == len(names)
    for name in names:
        assert sum(f"dependency patch {name} not applied" in w for w in warnings) == 1
    assert any("python-engineio 4.16.0 is installed, tested on >=4.11,<4.16" in w for w in warnings)
    assert any("python-socketio 5.19.0 is installed, tested on >=5.12,<5.19" in w for w in warnings)
    assert any("aiohttp 3.15.0 is installed, tested on >=3.14,<3.15" in w for w in warnings)

    sio = server.app[SIO]
    assert type(sio) is socketio.AsyncServer
    assert type(sio.eio) is engineio.AsyncServer
    await exchange(server.url, ["websocket"])
    await exchange(server.url, ["polling"])
    await exchange(server.url, ["polling", "websocket"])  # upgrades
    kinds = {type(sock) for sock in sio.eio.sockets.values()}
    assert kinds <= {async_socket.AsyncSocket}


def redis_reachable() -> bool:
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not redis_reachable(), reason="no Redis at TEST_REDIS_URL")
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_with_redis_the_stock_manager_serves_and_readyz_checks_ping(
    newer_releases: None, start: Any, database_url: str
) -> None:
    channel = f"stock-{uuid.uuid4().hex[:8]}"
    server = await start(database_url, REDIS_URL=REDIS_URL, REDIS_CHANNEL=channel)
    assert type(server.app[REDIS]) is StockRedisManager
    await exchange(server.url, ["websocket"])
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/readyz") as response:
        body = await response.json()
    assert response.status == 200, body
    assert body["checks"]["redis"] == "ok"
