"""Waiting for an event instead of sleeping: poll a condition until it holds, or fail loudly."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Return the first truthy value of `predicate()` (a function or a coroutine function),
    checked every `interval` seconds; `AssertionError` after `timeout` seconds.

    The interval only paces the polling: the test goes on as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)
