"""`CommitPacer`: rounds start at once while the process is idle, `delay` apart while busy."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from socketsvc.domain.models import Role, Sender
from socketsvc.storage.pacing import CommitPacer
from socketsvc.storage.store import Store

VISITOR = Sender(Role.VISITOR, "v1", "Visitor v1")


# A share of one core the burns below reach even on a loaded machine (CI shares 2 cores with
# the services and the other processes of the suite): a burn counts CPU time, not wall time, so
# its share is what the scheduler gave it, and in CI that was once below the default 0.6.
BUSY = 0.25


def burn(seconds: float) -> None:
    """Use `seconds` of this process's CPU time."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(range(1000))


async def timed_wait(pacer: CommitPacer) -> float:
    started = time.monotonic()
    await pacer.wait()
    return time.monotonic() - started


def pacing_gauge() -> float | None:
    return REGISTRY.get_sample_value("socketsvc_commit_pacing")


async def test_an_idle_process_starts_rounds_at_once() -> None:
    pacer = CommitPacer(0.5, window=0.05)
    await asyncio.sleep(0.1)  # a window with (nearly) no CPU use
    waits = [await timed_wait(pacer) for _ in range(3)]
    assert not pacer.pacing
    assert max(waits) < 0.25


async def test_a_busy_process_spaces_rounds_delay_apart_until_it_is_idle_again() -> None:
    pacer = CommitPacer(0.3, busy=BUSY, window=0.5, linger=0.5)
    burn(0.6)
    first = await timed_wait(pacer)  # samples the burn: busy
    assert pacer.pacing and pacing_gauge() == 1.0
    second = await timed_wait(pacer)  # within the window: no new sample
    assert first < 0.25  # nothing started in the last `delay` seconds
    assert second >= 0.25

    await asyncio.sleep(0.6)  # idle for longer than a window and `linger`
    assert await timed_wait(pacer) < 0.25  # this wait's sample finds the process idle
    assert not pacer.pacing and pacing_gauge() == 0.0
    assert await timed_wait(pacer) < 0.25


async def test_pacing_lasts_through_a_short_lull() -> None:
    pacer = CommitPacer(0.3, busy=BUSY, window=0.05, linger=1.0)
    burn(0.1)
    await pacer.wait()  # samples the burn: busy
    assert pacer.pacing
    await asyncio.sleep(0.4)  # idle, but for less than `linger`
    assert await timed_wait(pacer) < 0.25  # the last round started long enough ago
    assert pacer.pacing
    assert await timed_wait(pacer) >= 0.25  # the next one waits for `delay`


async def test_zero_delay_never_paces() -> None:
    pacer = CommitPacer(0.0, window=0.01)
    burn(0.05)
    waits = [await timed_wait(pacer) for _ in range(3)]
    assert not pacer.pacing
    assert max(waits) < 0.25


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="delay must be >= 0"):
        CommitPacer(-0.001)


async def test_messages_arriving_during_the_delay_are_stored_in_one_round(store: Store) -> None:
    await store.ensure_visitor("v1", "Visitor v1")
    conversation_id = (await store.create_conversation("v1", None)).conversation.id
    # Thresholds of 0: the first sample counts as busy, whatever the machine is doing.
    store.pacer = CommitPacer(0.6, busy=0.0, window=0.0)
    batches_before = REGISTRY.get_sample_value("socketsvc_append_batches_total") or 0.0

    first = asyncio.create_task(store.append_message(conversation_id, VISITOR, "m0", "c0"))
    later = []
    for i in range(1, 11):  # 10 more, 10 ms apart: all within the first round's delay
        await asyncio.sleep(0.01)
        later.append(
            asyncio.create_task(store.append_message(conversation_id, VISITOR, f"m{i}", f"c{i}"))
        )
    results = await asyncio.gather(first, *later)

    batches = (REGISTRY.get_sample_value("socketsvc_append_batches_total") or 0.0) - batches_before
    assert batches == 2
    assert [r.message.seq for r in results if r is not None] == list(range(1, 12))
    stored = await store.messages_after(conversation_id, 0, 100)
    assert [m.text for m in stored] == [f"m{i}" for i in range(11)]
