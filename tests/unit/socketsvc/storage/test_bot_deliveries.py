"""`BotDeliveryStore` on SQLite and PostgreSQL: claims are atomic and in order, leases run out,
stale deliveries go to exactly one fallback."""

from __future__ import annotations

import asyncio

from socketsvc.domain.models import Role, Sender, State
from socketsvc.storage.bot_deliveries import BotDeliveryStore
from socketsvc.storage.store import Store

BOT = Sender(Role.BOT, "bot", "Bot")


async def conversation(store: Store, visitor_id: str) -> str:
    await store.ensure_visitor(visitor_id, f"Visitor {visitor_id}")
    return (await store.create_conversation(visitor_id, (BOT, "Hello!"))).conversation.id


async def test_concurrent_claims_take_each_delivery_once(store: Store) -> None:
    deliveries = BotDeliveryStore(store)
    for i in range(40):
        cid = await conversation(store, f"v{i}")
        await deliveries.add(f"m{i}", cid, 2, "helper")
    await deliveries.add("m0", "ignored", 2, "helper")  # a repeated id adds nothing
    claims = await asyncio.gather(*(deliveries.claim("helper", f"w{i}", 5, 30) for i in range(10)))
    taken = [d.id for claim in claims for d in claim]
    print(f"\n10 workers claiming 5 each of 40: {sorted(len(c) for c in claims)}")
    assert len(taken) == len(set(taken)) == 40
    assert await deliveries.claim("helper", "late", 5, 30) == []
    assert await deliveries.claim("other", "w0", 5, 30) == []


async def test_one_conversation_at_a_time_in_order(store: Store) -> None:
    deliveries = BotDeliveryStore(store)
    cid = await conversation(store, "v1")
    for seq in (2, 3, 4):
        await deliveries.add(f"m{seq}", cid, seq, "helper")
    assert [d.id for d in await deliveries.claim("helper", "a", 10, 30)] == ["m2"]
    assert await deliveries.claim("helper", "b", 10, 30) == []
    assert await deliveries.held("m2", "b") is None
    assert await deliveries.complete("m2", "a")
    assert not await deliveries.complete("m2", "a")
    assert (await deliveries.held("m2", "a")) is not None  # answered by a: a may add to it
    assert [d.id for d in await deliveries.claim("helper", "b", 10, 30)] == ["m3"]
    # A conversation that left the bot is not delivered any more.
    await store.transition(cid, from_states=[State.BOT], values={"state": State.QUEUED.value})
    await deliveries.release_worker("b")
    assert await deliveries.claim("helper", "c", 10, 30) == []


async def test_given_back_deliveries_go_to_another_worker_first(store: Store) -> None:
    deliveries = BotDeliveryStore(store)
    cid = await conversation(store, "v1")
    await deliveries.add("m2", cid, 2, "helper")
    assert len(await deliveries.claim("helper", "a", 1, 30)) == 1
    assert await deliveries.holding("a") == {"m2"}
    assert await deliveries.release_worker("a") == 1
    assert await deliveries.claim("helper", "a", 1, 30, regrab=60) == []
    again = await deliveries.claim("helper", "b", 1, 30)
    assert [(d.id, d.attempts) for d in again] == [("m2", 2)]


async def test_expired_leases_and_stale_deliveries(store: Store) -> None:
    deliveries = BotDeliveryStore(store)
    first, second = await conversation(store, "v1"), await conversation(store, "v2")
    await deliveries.add("m1", first, 2, "helper")
    assert len(await deliveries.claim("helper", "a", 1, 0.05)) == 1
    await asyncio.sleep(0.1)
    assert await deliveries.release_expired() == [("m1", "a")]
    assert await deliveries.release_expired() == []
    await deliveries.add("m2", second, 2, "helper")
    await asyncio.sleep(0.1)
    stale = await asyncio.gather(*(deliveries.take_stale("helper", 0.05) for _ in range(4)))
    assert sorted(d.id for batch in stale for d in batch) == ["m1", "m2"]
    assert await deliveries.claim("helper", "b", 5, 30) == []
