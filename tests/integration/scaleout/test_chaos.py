"""Many processes behind nginx, nothing lost under faults.

Two `python -m socketsvc` processes behind a real nginx (`hash $remote_addr consistent`), sharing
PostgreSQL and a dedicated Redis; 50 visitors and 5 agents, each on its own loopback address,
every visitor handed off and accepted, messages flowing both ways. Then one fault per test:
`kill -9` of a process, Redis down for 5 s, a rolling restart. Afterwards everyone resyncs and
the figures are checked against the database (see `tests/support/chaos_clients.audit`):
lost = 0 and duplicated = 0.

Also: processes starting together on an empty database all start (the schema race), and a
regression test that plain python-socketio clients reconnect after a SIGTERM.

`bench/chaos.py` runs the same scenarios for longer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from socketsvc.storage.store import Store
from tests.support.chaos_clients import Audit, Crowd, Visitor, audit, percentile
from tests.support.chat_client import ChatClient
from tests.support.cluster import Cluster, environment_problem
from tests.support.tokens import agent_token

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(150)]

VISITORS = 50
AGENTS = 5
PROCESSES = 2
SERVICE_ENV = {
    # Long enough that agents moved by a fault are back before their chats would be requeued.
    "AGENT_GRACE_SECONDS": "30",
}


@pytest.fixture
def postgres_url(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        pytest.skip("several processes need PostgreSQL")
    problem = environment_problem()
    if problem:
        pytest.skip(problem)
    return database_url


@pytest.fixture
async def cluster(postgres_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with Cluster(postgres_url, tmp_path / "cluster", PROCESSES, SERVICE_ENV) as running:
        yield running


@pytest.fixture
async def crowd(cluster: Cluster) -> AsyncIterator[Crowd]:
    """Everyone connected through nginx, every conversation assigned to an agent."""
    people = Crowd(cluster.url, visitors=VISITORS, agents=AGENTS)
    try:
        took = await people.start()
        counts = await split(cluster, f"set up in {took:.1f} s;")
        assert all(c["/chat"] + c["/agent"] > 0 for c in counts), "nginx sent everyone to one node"
        assert sum(c["/chat"] for c in counts) == VISITORS
        assert sum(c["/agent"] for c in counts) == AGENTS
        yield people
    finally:
        await people.close()


async def split(cluster: Cluster, prefix: str = "") -> list[dict[str, int]]:
    """Print and return each live process's connections (its /metrics socketsvc_connections)."""
    counts = []
    parts = []
    for i in range(cluster.count):
        if not cluster.alive(i):
            counts.append({"/chat": 0, "/agent": 0})
            parts.append(f"process {i}: down")
            continue
        found = await cluster.connections(i)
        counts.append(found)
        parts.append(f"process {i}: {found['/chat']} visitors + {found['/agent']} agents")
    print(f"\n{prefix} split: " + " | ".join(parts))
    return counts


async def finish(crowd: Crowd, postgres_url: str, label: str) -> Audit:
    """Stop the traffic, let everyone resync, audit against the database and print one line."""
    assert await crowd.wait_connected(20), "some participants never reconnected"
    await crowd.stop_traffic()
    assert await crowd.resync(30), "some participants could not sync"
    result = await audit(postgres_url, crowd)
    times = crowd.reconnect_times()
    print(
        f"\n[{label}] {result.line()} | reconnects={len(times)} "
        f"p50={percentile(times, 50):.2f}s p99={percentile(times, 99):.2f}s | "
        f"{crowd.counters()}"
    )
    assert result.sent > VISITORS * 5
    assert result.acked == result.sent, result.summary()
    assert result.stored == result.sent, result.summary()
    assert result.lost == 0, result.summary()
    assert result.duplicated == 0, result.summary()
    assert result.ok, result.summary()
    return result


async def test_kill_9_of_one_process_mid_traffic_loses_nothing(
    cluster: Cluster, crowd: Crowd, postgres_url: str
) -> None:
    crowd.start_traffic()
    await asyncio.sleep(4)
    victim = 0
    on_victim = await cluster.connections(victim)
    await cluster.kill(victim)
    await asyncio.sleep(8)  # traffic goes on, through the survivor
    assert await crowd.wait_connected(15)
    counts = await split(cluster, "after kill -9 of process 0:")
    assert counts[1] == {"/chat": VISITORS, "/agent": AGENTS, "/bot": 0}
    moved = on_victim["/chat"] + on_victim["/agent"]
    assert crowd.disconnected() == moved
    await finish(crowd, postgres_url, f"kill -9 ({moved} participants moved)")


async def test_redis_outage_readiness_and_cross_process_delivery_recover(
    cluster: Cluster, crowd: Crowd, postgres_url: str, clients: list[ChatClient]
) -> None:
    # a probe pair pinned across processes: its visitor on process 0, its agent on process 1
    probe_agent = ChatClient(cluster.process_url(1), namespace="/agent")
    clients.append(probe_agent)
    await probe_agent.connect({"token": agent_token("probe", "Probe")})
    probe_visitor = ChatClient(cluster.process_url(0))
    clients.append(probe_visitor)
    await probe_visitor.connect()
    await probe_visitor.wait_for(lambda: probe_visitor.of("session"), what="session")
    conversation_id = probe_visitor.session["conversation_id"]
    assert (await probe_visitor.call("handoff", {}))["ok"]
    assert (await probe_agent.call("accept", {"conversation_id": conversation_id}))["ok"]
    await cross_process_round_trip(probe_visitor, probe_agent, conversation_id, "before")

    crowd.start_traffic()
    await asyncio.sleep(3)
    await cluster.redis_stop()
    down_at = time.monotonic()
    unready = await wait_all_unready(cluster, timeout=4.5)
    print(f"\nRedis down: /readyz {unready}")
    await asyncio.sleep(max(0.0, down_at + 5 - time.monotonic()))
    await cluster.redis_start()
    up_at = time.monotonic()
    recovery = await asyncio.gather(*(cluster.wait_ready(i, 10) for i in range(cluster.count)))
    print(
        f"Redis down {up_at - down_at:.1f} s; /readyz 200 again after "
        + ", ".join(f"process {i}: {s:.2f} s" for i, s in enumerate(recovery))
    )
    assert max(recovery) <= 10

    # no service was restarted, yet a message from process 0 reaches process 1 live (no sync)
    await cross_process_round_trip(probe_visitor, probe_agent, conversation_id, "after")
    recovered_at = time.monotonic()
    await asyncio.sleep(5)
    live, total = crowd.live_since(recovered_at)
    print(f"conversations whose agent got a visitor message live after recovery: {live}/{total}")
    assert live == total
    await finish(crowd, postgres_url, "redis outage 5 s")


async def wait_all_unready(cluster: Cluster, timeout: float) -> list[Any]:
    """Poll every process's /readyz until each has answered 503; their answers."""
    deadline = time.monotonic() + timeout
    answers: dict[int, Any] = {}
    while len(answers) < cluster.count and time.monotonic() < deadline:
        for i in range(cluster.count):
            if i not in answers:
                status, body = await cluster.ready(i)
                if status == 503:
                    answers[i] = (status, body["checks"])
        await asyncio.sleep(0.2)
    assert len(answers) == cluster.count, f"some processes stayed ready: {answers}"
    return [answers[i] for i in range(cluster.count)]


async def cross_process_round_trip(
    visitor: ChatClient, agent: ChatClient, conversation_id: str, when: str
) -> None:
    sent = await visitor.send(f"visitor on process 0, {when} the outage")
    assert sent["ok"], sent
    await agent.wait_message(lambda m: m["id"] == sent["message"]["id"], timeout=5)
    reply = await agent.call(
        "message",
        {"conversation_id": conversation_id, "client_id": f"probe-{when}", "text": "got it"},
    )
    assert reply["ok"], reply
    await visitor.wait_message(lambda m: m["id"] == reply["message"]["id"], timeout=5)


async def test_rolling_restart_under_traffic_loses_nothing(
    cluster: Cluster, crowd: Crowd, postgres_url: str
) -> None:
    crowd.start_traffic()
    await asyncio.sleep(3)
    exits = []
    for i in range(cluster.count):
        code, seconds = await cluster.stop(i)
        ready = await cluster.start(i)
        exits.append((code, seconds))
        print(
            f"\nprocess {i}: SIGTERM -> exit {code} in {seconds:.2f} s; "
            f"ready again in {ready:.2f} s"
        )
        assert await crowd.wait_connected(15)
        await asyncio.sleep(2)
    await split(cluster, "after the rolling restart:")
    await asyncio.sleep(2)
    await finish(crowd, postgres_url, "rolling restart")
    for code, seconds in exits:
        assert code == 0
        assert seconds < 10


async def test_processes_starting_together_on_an_empty_database_all_start(
    database_url: str,
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("one SQLite file is never shared by several processes")
    postgres_url = database_url
    # What `python -m socketsvc` does at startup (app._database -> Store.open), for two
    # processes at once; in one event loop the interleaving is the same every time. Without a
    # lock around `metadata.create_all` both see no tables, both CREATE them, and the second
    # dies with UniqueViolation on pg_type_typname_nsp_index.
    opened = await asyncio.gather(
        *(Store.open(postgres_url) for _ in range(2)), return_exceptions=True
    )
    for store in opened:
        if isinstance(store, Store):
            await store.close()
    assert [type(s).__name__ for s in opened] == ["Store", "Store"], opened


async def test_plain_python_socketio_client_reconnects_after_sigterm(cluster: Cluster) -> None:
    # python-socketio's own behaviour (browser_like=False), as a bot integration would run it
    visitor = Visitor(cluster.url, "plain-python", "127.0.0.90", browser_like=False)
    try:
        await visitor.start()
        upstream = await cluster.upstream_of(visitor.source_ip)
        serving = cluster.ports.index(int(upstream.rsplit(":", 1)[1]))
        code, _ = await cluster.stop(serving)
        assert code == 0
        assert visitor.disconnects == 1
        assert await visitor.wait_ready(6), "the client never reconnected to the other process"
        assert len(visitor.reconnect_times) == 1
    finally:
        await visitor.close()
