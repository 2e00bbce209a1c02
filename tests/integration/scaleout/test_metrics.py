"""/metrics after real traffic on a Redis-configured app: every series an operator alerts on is
there, with plausible values.

The app runs in this process, so its counters are process-global (other tests move them too):
counters and histograms are compared before and after; gauges are read as they are.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import AppServer, make_settings
from tests.support.chat_client import ChatClient
from tests.support.tokens import TOKENS

pytestmark = pytest.mark.postgres

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[AppServer]:
    if database_url.startswith("sqlite"):
        pytest.skip("REDIS_URL needs PostgreSQL")
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    finally:
        await client.aclose()
    channel = f"socketsvc-metrics-{uuid.uuid4().hex[:8]}"
    app = AppServer(make_settings(database_url, REDIS_URL=REDIS_URL, REDIS_CHANNEL=channel))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def scrape(server: AppServer) -> Samples:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} exported twice"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the series does not exist yet (a counter never moved)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets a series is exported with."""
    return [dict(labels) for (sample, labels) in samples if sample == name]


async def wait_metric(server: AppServer, check: Any, timeout: float = 10.0) -> Samples:
    """Scrape until `check(samples)` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        samples = await scrape(server)
        if check(samples):
            return samples
        if asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.2)


async def test_metrics_after_real_traffic(server: AppServer, clients: list[ChatClient]) -> None:
    ready = await wait_metric(server, lambda s: value(s, "socketsvc_pubsub_canary_ok") == 1)
    assert value(ready, "socketsvc_pubsub_canary_ok") == 1
    before = await scrape(server)

    agent = ChatClient(server.url, namespace="/agent")
    clients.append(agent)
    await agent.connect({"token": TOKENS.mint_agent("metrics-agent", "Mia")})
    await agent.wait_for(lambda: agent.of("assigned"), what="snapshots")
    visitor = ChatClient(server.url, transports=["polling"])
    clients.append(visitor)
    await visitor.connect()
    await visitor.wait_for(lambda: visitor.of("session"), what="session")
    cid = visitor.session["conversation_id"]

    # the bot cannot answer gibberish: a fallback
    await visitor.send("qwzx vbnm plorkt")
    await visitor.wait_message(lambda m: m["sender"]["role"] == "bot" and m["seq"] == 3)
    # a retry with the same client_id: the same ack, nothing stored twice (another fallback)
    first = await visitor.send("zzgrb flomp quix", client_id="retry-1")
    assert await visitor.send("zzgrb flomp quix", client_id="retry-1") == first
    await visitor.wait_message(lambda m: m["sender"]["role"] == "bot" and m["seq"] == 5)
    # an invalid event
    refused = await visitor.call("message", {"client_id": "bad", "text": "   "})
    assert refused["error"]["code"] == "invalid"
    # handoff: queued
    assert (await visitor.call("handoff", {}))["state"] == "queued"
    queued = await wait_metric(server, lambda s: value(s, "socketsvc_queue_length") >= 1)
    assert value(queued, "socketsvc_queue_length") == 1
    await asyncio.sleep(1.1)  # a measurable wait in the queue
    assert (await agent.call("accept", {"conversation_id": cid}))["ok"]
    reply = await agent.call(
        "message", {"conversation_id": cid, "client_id": "a-1", "text": "Hi, Mia here."}
    )
    assert reply["ok"]
    await visitor.wait_message(lambda m: m["client_id"] == "a-1")
    sent = await visitor.send("great, thanks")
    await agent.wait_message(lambda m: m["seq"] == sent["message"]["seq"])
    assert (await visitor.call("sync", {"after_seq": 0}))["ok"]

    # a second tab resumes the visitor with its token, over WebSocket, then leaves
    tab = ChatClient(server.url)
    await tab.connect({"visitor_token": visitor.session["visitor_token"]})
    await tab.wait_for(lambda: tab.of("session"), what="session")

    during = await scrape(server)
    await tab.close()
    after = await wait_metric(
        server,
        lambda s: (
            value(s, "socketsvc_disconnects_total", namespace="/chat")
            > value(before, "socketsvc_disconnects_total", namespace="/chat")
        ),
    )

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # connections by namespace and transport (this app's own gauge, read live)
    assert {
        tuple(sorted(labels.items())) for labels in series(during, "socketsvc_connections")
    } >= {
        (("namespace", ns), ("transport", t))
        for ns in ("/chat", "/agent")
        for t in ("polling", "websocket")
    }
    assert value(during, "socketsvc_connections", namespace="/chat", transport="polling") == 1
    assert value(during, "socketsvc_connections", namespace="/chat", transport="websocket") == 1
    assert value(during, "socketsvc_connections", namespace="/agent", transport="websocket") == 1
    assert value(after, "socketsvc_connections", namespace="/chat", transport="websocket") == 0

    assert delta("socketsvc_connects_total", namespace="/chat") == 2
    assert delta("socketsvc_connects_total", namespace="/agent") == 1
    assert delta("socketsvc_disconnects_total", namespace="/chat") == 1
    assert delta("socketsvc_sessions_resumed_total") == 1

    ok = {"namespace": "/chat", "event": "message", "outcome": "ok"}
    assert delta("socketsvc_events_total", **ok) == 4  # gibberish, retry x2, thanks
    assert (
        delta("socketsvc_events_total", namespace="/chat", event="message", outcome="invalid") == 1
    )
    assert delta("socketsvc_events_total", namespace="/chat", event="handoff", outcome="ok") == 1
    assert delta("socketsvc_events_total", namespace="/chat", event="sync", outcome="ok") == 1
    assert delta("socketsvc_events_total", namespace="/agent", event="accept", outcome="ok") == 1
    assert delta("socketsvc_events_total", namespace="/agent", event="message", outcome="ok") == 1

    handled = {"namespace": "/chat", "event": "message"}
    assert delta("socketsvc_handler_seconds_count", **handled) == 5
    assert delta("socketsvc_handler_seconds_bucket", le="+Inf", **handled) == 5
    assert 0 < delta("socketsvc_handler_seconds_sum", **handled) < 5
    buckets = sorted(
        (float(labels["le"]), value(after, "socketsvc_handler_seconds_bucket", **labels))
        for labels in series(after, "socketsvc_handler_seconds_bucket")
        if labels["namespace"] == "/chat" and labels["event"] == "message"
    )
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)  # cumulative

    # greeting + 2 fallbacks (bot), 3 visitor messages (the retry stored once), queued + joined
    # (system), one agent reply
    assert delta("socketsvc_messages_stored_total", role="bot") == 3
    assert delta("socketsvc_messages_stored_total", role="visitor") == 3
    assert delta("socketsvc_messages_stored_total", role="system") == 2
    assert delta("socketsvc_messages_stored_total", role="agent") == 1
    assert delta("socketsvc_duplicate_messages_total") == 1

    assert value(after, "socketsvc_queue_length") == 0
    assert delta("socketsvc_queue_wait_seconds_count") == 1
    assert 1.0 <= delta("socketsvc_queue_wait_seconds_sum") < 30
    assert delta("socketsvc_queue_wait_seconds_bucket", le="+Inf") == 1
    assert delta("socketsvc_queue_wait_seconds_bucket", le="1.0") == 0
    assert delta("socketsvc_handoffs_total", by="visitor") == 1
    assert delta("socketsvc_bot_fallbacks_total") == 2
    assert ("socketsvc_redis_publish_failures_total", frozenset()) in after
    assert delta("socketsvc_redis_publish_failures_total") == 0
    assert value(after, "socketsvc_pubsub_canary_ok") == 1
    print(
        "\nmetrics: "
        + ", ".join(
            f"{name}={delta(name, **labels):g}"
            for name, labels in (
                ("socketsvc_events_total", ok),
                ("socketsvc_handler_seconds_count", handled),
                ("socketsvc_messages_stored_total", {"role": "visitor"}),
                ("socketsvc_queue_wait_seconds_sum", {}),
                ("socketsvc_handoffs_total", {"by": "visitor"}),
                ("socketsvc_bot_fallbacks_total", {}),
            )
        )
    )
