"""The database goes away under traffic, and comes back.

The service runs as a subprocess (`live_server`, a fresh database per test) with 20 resilient
visitors and 2 agents chatting (`tests/support/chaos_clients`: they retry a message with the
same client_id until it is acknowledged, and sync on gaps). Then, for 5 s:

- PostgreSQL refuses connections: `ALTER DATABASE ... ALLOW_CONNECTIONS false` and every backend
  of the service terminated (`pg_terminate_backend`), from an admin connection to `test`;
- SQLite is locked by another process holding `BEGIN EXCLUSIVE` on the file: with the default
  SQLITE_BUSY_TIMEOUT (30 s) writes wait the lock out; with 1 s they are refused `unavailable`.

Checked: every refused event and connect was answered `unavailable` (none `internal`), nothing
was lost or doubled (the audit against the database), traffic was back within 5 s of the
database returning, and the outage cost the log a few lines (no traceback). `/readyz` is 503
while PostgreSQL is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import socketio

from tests.conftest import PG_ADMIN_URL, ServiceProcess
from tests.support.chaos_clients import Crowd, audit
from tests.support.chat_client import ChatClient
from tests.support.tokens import agent_token

pytestmark = pytest.mark.timeout(120)

VISITORS = 20
AGENTS = 2
OUTAGE = 5.0
BACK_WITHIN = 5.0
MAX_LOG_LINES = 10


@pytest.fixture
async def crowd(live_server: ServiceProcess) -> AsyncIterator[Crowd]:
    """Everyone connected, every conversation assigned to an agent, no traffic yet."""
    people = Crowd(live_server.url, visitors=VISITORS, agents=AGENTS)
    try:
        await people.start()
        yield people
    finally:
        await people.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_postgres_refusing_connections_is_answered_unavailable_and_logged_once(
    live_server: ServiceProcess, crowd: Crowd, database_url: str
) -> None:
    database = database_url.rpartition("/")[2]
    crowd.start_traffic()
    await asyncio.sleep(3)
    mark = len(live_server.log)
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            down_at = time.monotonic()
            readiness, refused_connects = await asyncio.gather(
                _readiness_while(live_server.url, down_at + OUTAGE),
                _new_connections(live_server.url, after=1.0),
            )
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        up_at = time.monotonic()
    finally:
        await admin.close()
    print(
        f"\nPostgreSQL refused connections for {up_at - down_at:.1f} s"
        f" ({terminated} backends terminated); /readyz during it: {dict(readiness)};"
        f" new connections during it: {refused_connects}"
    )
    assert readiness and set(readiness) == {503}, readiness
    assert refused_connects == {
        "/chat connect": "ok",
        "/chat": "unavailable",
        "/agent": "unavailable",
    }

    figures = await _recovered(crowd, live_server, mark, up_at, database_url, "postgres")
    assert figures["unavailable"] > 0, "the outage refused nothing: was the database down?"
    assert _metric(await _scrape(live_server.url), "socketsvc_database_outage") == 0.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.slow  # about 15 s each, a subprocess and a 3 s lock
@pytest.mark.parametrize(
    "busy_timeout",
    [
        pytest.param(None, id="waited-out"),
        pytest.param(1.0, id="refused", marks=pytest.mark.service_env(SQLITE_BUSY_TIMEOUT=1)),
    ],
)
async def test_sqlite_locked_by_another_process_loses_nothing(
    live_server: ServiceProcess, crowd: Crowd, database_url: str, busy_timeout: float | None
) -> None:
    path = database_url.removeprefix("sqlite:///")
    crowd.start_traffic()
    await asyncio.sleep(3)
    mark = len(live_server.log)
    locker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LOCKER, path, str(OUTAGE), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert locker.stdout is not None
        assert await asyncio.wait_for(locker.stdout.readline(), 15) == b"locked\n"
        down_at = time.monotonic()
        assert await asyncio.wait_for(locker.stdout.readline(), 15) == b"released\n"
        up_at = time.monotonic()
        assert await asyncio.wait_for(locker.wait(), 10) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            locker.kill()
        await locker.wait()
    print(
        f"\nSQLite locked (BEGIN EXCLUSIVE in another process) for {up_at - down_at:.1f} s,"
        f" SQLITE_BUSY_TIMEOUT={busy_timeout or 'default (30 s)'}"
    )
    figures = await _recovered(crowd, live_server, mark, up_at, database_url, "sqlite")
    if busy_timeout is None:
        assert figures["unavailable"] == 0, "a lock shorter than the busy timeout is waited out"
    else:
        assert figures["unavailable"] > 0, "a lock past the busy timeout refused nothing"


_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", flush=True)
"""


async def _recovered(
    crowd: Crowd,
    service: ServiceProcess,
    mark: int,
    up_at: float,
    database_url: str,
    label: str,
) -> dict[str, Any]:
    """After the database is back: traffic back within 5 s, every refusal `unavailable`, the
    audit clean, a few log lines. Prints and returns the figures."""
    back_after = await _traffic_back(crowd, up_at, timeout=15.0)
    await asyncio.sleep(1.0)  # the outage's last log line, if any, is written by now
    window = service.log[mark:]
    assert await crowd.wait_connected(20), "some participants never reconnected"
    await crowd.stop_traffic()
    assert await crowd.resync(30), "some participants could not sync"
    result = await audit(database_url, crowd)
    counters = crowd.counters()
    codes: Counter[str] = Counter()
    for key, n in counters["errors"].items():
        codes[key.rpartition(":")[2]] += n
    connect_codes = Counter(counters["connect_errors"])
    # Twenty lines say what the outage cost the log; with an ERROR among them, all of it (its
    # traceback ends with the exception that was not taken for an outage).
    shown = window if any(" ERROR " in line for line in window) else window[:20]
    print(
        f"[{label}] refused events by code: {dict(codes) or 'none'} ({counters['errors']});"
        f" connect errors by code: {dict(connect_codes) or 'none'};"
        f" traffic back {back_after:.2f} s after the database;"
        f" {len(window)} log lines during the outage"
        + (":\n" + "".join(shown) if window else "\n")
        + ("...\n" if len(shown) < len(window) else "")
        + result.line()
    )
    assert set(codes) <= {"unavailable"}, counters
    assert set(connect_codes) <= {"unavailable"}, counters
    assert back_after <= BACK_WITHIN
    assert result.acked == result.sent, result.summary()
    assert result.stored == result.sent, result.summary()
    assert result.lost == 0, result.summary()
    assert result.duplicated == 0, result.summary()
    assert result.ok, result.summary()
    assert not any("Traceback" in line for line in window), "".join(window[:50])
    assert len(window) <= MAX_LOG_LINES, "".join(window[:50])
    return {"unavailable": codes["unavailable"] + connect_codes["unavailable"]}


async def _traffic_back(crowd: Crowd, moment: float, timeout: float) -> float:
    """Seconds after `moment` until every conversation's agent got a visitor message live."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live, total = crowd.live_since(moment)
        if live == total:
            return time.monotonic() - moment
        await asyncio.sleep(0.05)
    live, total = crowd.live_since(moment)
    raise AssertionError(f"traffic not back after {timeout} s: {live}/{total} conversations")


async def _new_connections(url: str, after: float) -> dict[str, Any]:
    """A new visitor and a new agent try to connect, the visitor then writes; their error codes.

    A new visitor's connect reads nothing (its conversation is only promised, docs/protocol.md), so
    it is answered with the greeting even now; its first message is what needs the database, and
    that is refused. The agent's connect reads the agent's queue, so it is refused at connect."""
    await asyncio.sleep(after)
    codes: dict[str, Any] = {}
    auth = {"/chat": None, "/agent": {"token": agent_token("a", "A")}}
    for namespace, credentials in auth.items():
        client = ChatClient(url, namespace=namespace)
        try:
            with contextlib.suppress(socketio.exceptions.ConnectionError):
                await client.connect(credentials)
            error = client.connect_error
            if namespace == "/chat" and error is None:
                ack = await client.send("written while the database is away")
                codes["/chat connect"] = "ok"
                codes["/chat"] = ack["error"]["code"] if not ack.get("ok") else "stored"
            else:
                codes[namespace] = error["data"]["code"] if isinstance(error, dict) else error
        finally:
            await client.close()
    return codes


async def _readiness_while(url: str, until: float) -> Counter[int]:
    """Poll /readyz until `until`; how often each status was answered."""
    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < until:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(3)) as answer:
                    statuses[answer.status] += 1
            await asyncio.sleep(max(0.0, min(0.5, until - time.monotonic())))
    return statuses


async def _scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as answer:
        return await answer.text()


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
