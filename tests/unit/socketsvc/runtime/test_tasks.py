"""`Deadline` and `Watchdog`: asyncio.timeout() as a plain `with` block, once or many times."""

from __future__ import annotations

import asyncio
import time

import pytest

from socketsvc.runtime.tasks import CoarseWatchdog, Deadline, Watchdog

# -- Deadline: asyncio.timeout() as a plain `with` --------------------------------------------


async def test_a_timeout_that_expires_raises_timeout_error_and_leaves_the_task_uncancelled():
    started = time.monotonic()
    with pytest.raises(TimeoutError), Deadline(0.05):
        await asyncio.sleep(5)
    assert 0.04 < time.monotonic() - started < 1
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # no cancellation left over


async def test_a_wait_that_ends_in_time_disarms_the_timeout():
    with Deadline(0.05):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the deadline has passed: nothing is cancelled


# -- Watchdog: one timer for many guarded waits ------------------------------------------------
# CoarseWatchdog: the same on the loop's TimerWheel (up to 0.1 s late), so the same tests.

watchdogs = pytest.mark.parametrize("kind", [Watchdog, CoarseWatchdog])


@watchdogs
async def test_a_watched_wait_that_lasts_too_long_raises_timeout_error(
    kind: type[Watchdog],
) -> None:
    watchdog = kind(0.1)
    started = time.monotonic()
    with pytest.raises(TimeoutError), watchdog:
        await asyncio.sleep(5)
    assert 0.09 < time.monotonic() - started < 1
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    watchdog.close()
    await asyncio.sleep(0.01)  # no cancellation left over


@watchdogs
async def test_many_short_watched_waits_outlast_the_delay_together(kind: type[Watchdog]) -> None:
    watchdog = kind(0.1)
    started = time.monotonic()
    while time.monotonic() - started < 0.5:  # five delays in all, 10 ms per wait
        with watchdog:
            await asyncio.sleep(0.01)
    watchdog.close()


@watchdogs
async def test_a_wait_that_starts_late_gets_the_whole_delay(kind: type[Watchdog]) -> None:
    watchdog = kind(0.2)
    with watchdog:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.15)  # unguarded: most of the delay passes outside a block
    started = time.monotonic()
    with watchdog:
        await asyncio.sleep(0.1)  # within its own 0.2 s: not cancelled
    with pytest.raises(TimeoutError), watchdog:
        await asyncio.sleep(5)
    assert 0.25 < time.monotonic() - started < 1.5
    watchdog.close()


@pytest.mark.parametrize("guard", [Deadline, Watchdog, CoarseWatchdog])
async def test_a_cancellation_from_elsewhere_stays_a_cancellation(
    guard: type[Watchdog],
) -> None:
    entered = asyncio.Event()

    async def wait() -> None:
        watchdog = guard(5)
        try:
            with watchdog:
                entered.set()
                await asyncio.sleep(5)
        finally:
            watchdog.close()

    task = asyncio.create_task(wait())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@watchdogs
async def test_a_timer_that_fires_between_blocks_cancels_nothing(kind: type[Watchdog]) -> None:
    watchdog = kind(0.05)
    with watchdog:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the first block's timer fires here, outside any block
    with watchdog:
        await asyncio.sleep(0.01)
    watchdog.close()
