"""LeanQueue, the packet queue of every Engine.IO socket: asyncio.Queue's behaviour, less memory."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest

from socketsvc.server import EngineServer, LeanQueue, SocketServer


def test_items_come_out_in_order_and_an_empty_queue_holds_no_deque():
    queue = LeanQueue()
    assert queue.empty() and queue.qsize() == 0
    for item in ("a", "b", None):
        queue.put_nowait(item)
    assert queue.qsize() == 3 and not queue.empty()
    assert [queue.get_nowait() for _ in range(3)] == ["a", "b", None]
    assert queue.empty()
    assert queue._queue == ()  # the deque is dropped once drained
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    queue.put_nowait("c")
    assert queue.get_nowait() == "c"


async def test_a_waiting_get_is_woken_by_a_put():
    queue = LeanQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    await queue.put("packet")
    assert await asyncio.wait_for(getter, 1) == "packet"
    assert not queue._getters


async def test_a_get_that_times_out_leaves_nothing_behind():
    queue = LeanQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    assert not queue._getters
    queue.put_nowait(1)
    assert await asyncio.wait_for(queue.get(), 1) == 1


async def test_join_waits_for_task_done():
    queue = LeanQueue()
    await queue.join()  # nothing queued: returns at once
    queue.put_nowait("x")
    joined = asyncio.create_task(queue.join())
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)
    with pytest.raises(ValueError):
        queue.task_done()


async def test_a_bounded_queue_still_blocks_puts():
    queue = LeanQueue(maxsize=1)
    queue.put_nowait(1)
    with pytest.raises(asyncio.QueueFull):
        queue.put_nowait(2)
    putter = asyncio.create_task(queue.put(2))
    await asyncio.sleep(0)
    assert not putter.done()
    assert queue.get_nowait() == 1
    await asyncio.wait_for(putter, 1)
    assert queue.get_nowait() == 2


async def test_a_queue_costs_a_fraction_of_asyncio_queue():
    def cost(factory: type[asyncio.Queue[object]]) -> float:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            queues = [factory() for _ in range(500)]
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert len(queues) == 500
        return (after - before) / 500

    lean, plain = cost(LeanQueue), cost(asyncio.Queue)
    print(f"LeanQueue {lean:.0f} B, asyncio.Queue {plain:.0f} B")
    assert lean < 1024 < plain


def test_every_engineio_socket_gets_a_lean_queue():
    server = SocketServer(async_mode="aiohttp")
    assert isinstance(server.eio, EngineServer)
    assert isinstance(server.eio.create_queue(), LeanQueue)
