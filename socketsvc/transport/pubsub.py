"""Cross-process broadcast through Redis, with a canary that proves this process can hear it.

python-socketio's `AsyncRedisManager` is best effort: while Redis is down it drops emits (and
logs), and it resubscribes on its own. Delivery correctness comes from the database and from
clients that `sync`; this module only makes the broadcast's health visible: every process
publishes a canary through the manager each second and must hear it back within a few seconds,
or `/readyz` says not ready. The overrides of python-socketio's private methods that this takes
are a patch (`patches/socketio_pubsub.py`); `redis_manager()` picks `StockRedisManager`, without
them, where python-socketio is outside the versions that patch was tested on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

import socketio
from redis import asyncio as aioredis
from socketio.async_pubsub_manager import AsyncPubSubManager

from socketsvc.runtime import metrics
from socketsvc.transport import patches
from socketsvc.transport.managers import LeanManager
from socketsvc.transport.patches import Applied, socketio_pubsub
from socketsvc.transport.patches.socketio_pubsub import (
    CANARY_DEADLINE,
    CANARY_SID,
    MAX_OUTBOX,
    MAX_RESUBSCRIBE_DELAY,
    CanaryPubSub,
)

__all__ = [
    "CANARY_DEADLINE",
    "CANARY_INTERVAL",
    "CANARY_SID",
    "MAX_OUTBOX",
    "MAX_RESUBSCRIBE_DELAY",
    "RedisManager",
    "StockRedisManager",
    "redis_manager",
]

log = logging.getLogger(__name__)

CANARY_INTERVAL = 1.0


class RedisManager(CanaryPubSub, LeanManager):
    """`AsyncRedisManager` that publishes from a queue in pipelines (emits never wait for
    Redis), counts dropped publishes, hears its canary, resubscribes within seconds (instead of
    backing off to a minute) after Redis comes back, and sends an emit to several rooms as one
    message (the private overrides are `CanaryPubSub`'s).

    `LeanManager` comes after python-socketio's pub/sub manager in the method resolution order,
    so the local delivery of every emit (this process's own and other processes') is its
    direct one.
    """

    def __init__(self, url: str, channel: str = "socketsvc", socket_timeout: float = 2.0) -> None:
        super().__init__(
            url,
            channel=channel,
            redis_options={
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": socket_timeout,
            },
        )
        self._outbox: collections.deque[Any] = collections.deque()
        self._publisher: asyncio.Task[None] | None = None
        self.canary_heard_at = 0.0
        self.canary_started_at = time.monotonic()
        self._canary_seq = 0
        self._ping_client: Any = None

    async def run_canary(self) -> None:
        """Publish a canary every second and export its state until cancelled."""
        while True:
            try:
                await self.send_canary()
            except Exception:  # pragma: no cover - _publish already swallows Redis errors
                log.exception("canary publish failed")
            await asyncio.sleep(CANARY_INTERVAL)
            metrics.CANARY_OK.set(1 if self.canary_ok else 0)

    async def close(self) -> None:
        """Publish what is queued (for up to a second), stop listening, close the connections."""
        if self._publisher is not None and not self._publisher.done():
            await asyncio.wait([self._publisher], timeout=1.0)
            self._publisher.cancel()
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await thread
        for client in (self.pubsub, self.redis, self._ping_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()


class StockRedisManager(RedisManager):
    """The stock path: python-socketio's own methods where `CanaryPubSub` overrides private ones
    (a publish waits for Redis, resubscribing backs off as python-socketio does), an emit to
    several rooms is one emit each, and there is no canary: `canary_ok` is always True, so
    `/readyz` checks Redis with PING only."""

    _publish = socketio.AsyncRedisManager._publish
    _redis_listen_with_retries = socketio.AsyncRedisManager._redis_listen_with_retries
    _handle_emit = AsyncPubSubManager._handle_emit
    _handle_callback = AsyncPubSubManager._handle_callback
    emit_to_rooms = LeanManager.emit_to_rooms

    async def send_canary(self) -> None:
        return None

    @property
    def canary_ok(self) -> bool:
        return True

    async def run_canary(self) -> None:
        return None

    async def ping(self) -> None:
        """Raise unless Redis answers PING (a client of its own: public redis-py API only)."""
        if self._ping_client is None:
            self._ping_client = aioredis.Redis.from_url(self.redis_url, **self.redis_options)
        await self._ping_client.ping()


def redis_manager(
    url: str, channel: str, socket_timeout: float, applied: Applied | None = None
) -> RedisManager:
    """A `RedisManager`, or a `StockRedisManager` where its patch does not apply."""
    applied = patches.apply([socketio_pubsub.PATCH]) if applied is None else applied
    cls = RedisManager if socketio_pubsub.PATCH in applied else StockRedisManager
    return cls(url, channel=channel, socket_timeout=socket_timeout)


def initialize_now(sio: socketio.AsyncServer) -> None:
    """Subscribe at start rather than on the first connection (so that the canary works at once),
    where the manager is a `RedisManager` with its patch (which knows python-socketio's
    `manager_initialized`); else python-socketio subscribes on the first connection."""
    manager = sio.manager
    if isinstance(manager, RedisManager) and not isinstance(manager, StockRedisManager):
        socketio_pubsub.initialize_now(sio)
