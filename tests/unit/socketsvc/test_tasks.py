"""`Deadline`: asyncio.timeout() as a plain `with` block."""

from __future__ import annotations

import asyncio
import time

import pytest

from socketsvc.tasks import Deadline

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


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    entered = asyncio.Event()

    async def wait() -> None:
        with Deadline(5):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(wait())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
