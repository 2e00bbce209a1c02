"""Background work the service starts and must finish or cancel at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from socketsvc.domain.errors import Unavailable
from socketsvc.runtime.wheel import wheel

log = logging.getLogger(__name__)


class TaskTracker:
    """Keeps references to fire-and-forget tasks, logs their failures, drains them at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        if isinstance(task.exception(), Unavailable):
            # The database is away: storage/outages.py logs the outage once.
            log.debug("background task %s failed: %s", task.get_name(), task.exception())
            return
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for running tasks, then cancel the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)


class Watchdog:
    """`asyncio.timeout(delay)` as a plain `with` block, for a task that waits in the same place
    again and again (a connection's reader and writer): each `with watchdog:` block ends in
    TimeoutError once it has waited `delay` seconds (the cancellation withdrawn with
    `Task.uncancel()`), while a cancellation from elsewhere stays a CancelledError; the blocks
    share one timer.

    Entering a block only notes when it must end. The timer is armed when none is pending; when
    it fires it cancels the task if the current block is past its end, re-arms for the current
    block's end if that is later, and otherwise (no block running) lets the next block arm a new
    one. A task that waits many times per second therefore costs a timer every `delay` seconds
    instead of one per wait (with uvloop, each timer is a libuv handle: allocated, started,
    stopped and closed). `close()` drops the pending timer when the task is done.
    """

    __slots__ = ("_delay", "_end", "_expired", "_handle", "_loop", "_task")

    def __init__(self, delay: float) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError(f"{type(self).__name__} should be used inside a task")
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._delay = delay
        self._end: float | None = None
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> None:
        self._end = end = self._loop.time() + self._delay
        if self._handle is None:
            self._handle = self._loop.call_at(end, self._check)

    def __exit__(self, exc_type: type[BaseException] | None, exc: Any, tb: Any) -> None:
        self._end = None
        if self._expired:
            self._expired = False
            if self._task.uncancel() == 0 and exc_type is asyncio.CancelledError:
                raise TimeoutError

    def _check(self) -> None:
        self._handle = None
        end = self._end
        if end is None:
            return
        if self._loop.time() < end:
            self._handle = self._loop.call_at(end, self._check)
            return
        self._expired = True
        self._task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class CoarseWatchdog(Watchdog):
    """A `Watchdog` whose timer is the loop's `TimerWheel` (runtime/wheel.py): it ends a block up
    to `wheel.RESOLUTION` (0.1 s) late, and a pending check costs a slot in a list instead of a
    loop timer (540-800 bytes each with uvloop). For the long waits an idle connection keeps
    (the WebSocket reader's and writer's, `ping_interval + ping_timeout`). `close()` cannot
    withdraw the pending check; it leaves nothing for it to do (it holds the finished task until
    it runs, at most `delay` seconds)."""

    __slots__ = ("_armed", "_wheel")

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self._wheel = wheel(self._loop)
        self._armed = False

    def __enter__(self) -> None:
        self._end = end = self._loop.time() + self._delay
        if not self._armed:
            self._armed = True
            self._wheel.call_at(end, self._check)

    def _check(self) -> None:
        self._armed = False
        end = self._end
        if end is None:
            return
        if self._loop.time() < end:
            self._armed = True
            self._wheel.call_at(end, self._check)
            return
        self._expired = True
        self._task.cancel()

    def close(self) -> None:
        self._end = None


class Deadline(Watchdog):
    """A `Watchdog` for one block (`with Deadline(delay):`), for waits on the hot path that are
    not repeated in place (a long-polling request's, the bot runner's): its timer is dropped
    when the block ends. Without `asyncio.timeout()`'s two coroutines (`__aenter__`/`__aexit__`)
    and state machine, a guarded wait costs 3.2 us more than an unguarded one with uvloop,
    against 5.0 us under `asyncio.timeout()` (and 8-11 us under `asyncio.wait_for()`).
    """

    __slots__ = ()

    def __exit__(self, exc_type: type[BaseException] | None, exc: Any, tb: Any) -> None:
        self.close()
        super().__exit__(exc_type, exc, tb)


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, key: str) -> _Held:
        """`async with locks.hold(key):` runs the block while holding the key's lock."""
        return _Held(self._locks, key)


class _Held:
    """The context manager of `KeyedLocks.hold` (a class: it runs for every bot reply)."""

    __slots__ = ("_key", "_locks")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], key: str) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._key) or (asyncio.Lock(), 0)
        self._locks[self._key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:
            self._release_user()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._locks[self._key][0].release()
        self._release_user()

    def _release_user(self) -> None:
        lock, users = self._locks[self._key]
        if users <= 1:
            del self._locks[self._key]
        else:
            self._locks[self._key] = (lock, users - 1)
