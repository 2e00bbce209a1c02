"""`TimerWheel`: callbacks at their time or up to one resolution late, on one loop timer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from socketsvc.runtime.wheel import TimerWheel, wheel


async def test_callbacks_run_in_time_order_at_most_one_resolution_late() -> None:
    loop = asyncio.get_running_loop()
    timers = TimerWheel(loop, resolution=0.05)
    start = loop.time()
    ran: list[tuple[str, float]] = []
    for name, delay in [("c", 0.30), ("a", 0.10), ("b", 0.20), ("a2", 0.11)]:
        timers.call_at(
            start + delay, lambda n=name, d=delay: ran.append((n, loop.time() - start - d))
        )
    assert len(timers) == 4
    await asyncio.sleep(0.5)
    assert [name for name, _ in ran] == ["a", "a2", "b", "c"]
    lateness = [late for _, late in ran]
    assert min(lateness) >= 0, lateness  # never early
    assert max(lateness) < 0.05 + 0.05, lateness  # one resolution, and a loaded machine's slack
    assert len(timers) == 0


async def test_an_earlier_callback_rearms_the_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    timers = TimerWheel(loop, resolution=0.01)
    ran: list[str] = []
    timers.call_at(loop.time() + 5, lambda: ran.append("late"))
    timers.call_at(loop.time() + 0.05, lambda: ran.append("soon"))
    await asyncio.sleep(0.2)
    assert ran == ["soon"]
    assert len(timers) == 1


async def test_a_callback_may_schedule_another_and_one_that_raises_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    timers = TimerWheel(loop, resolution=0.01)
    ran: list[str] = []

    def again() -> None:
        ran.append("first")
        timers.call_at(loop.time() + 0.05, lambda: ran.append("second"))

    def broken() -> None:
        raise RuntimeError("boom")

    timers.call_at(loop.time() + 0.02, broken)
    timers.call_at(loop.time() + 0.02, again)
    with caplog.at_level(logging.ERROR, logger="socketsvc.runtime.wheel"):
        await asyncio.sleep(0.2)
    assert ran == ["first", "second"]
    assert any("timer callback" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_one_wheel_per_loop() -> None:
    assert wheel() is wheel()
    assert wheel().resolution == 0.1


async def test_a_resolution_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="resolution must be > 0"):
        TimerWheel(asyncio.get_running_loop(), resolution=0)
