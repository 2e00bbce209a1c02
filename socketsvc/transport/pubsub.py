"""Cross-process broadcast through Redis, with a canary that proves this process can hear it.

python-socketio's `AsyncRedisManager` is best effort: while Redis is down it drops emits (and
logs), and it resubscribes on its own. Delivery correctness comes from the database and from
clients that `sync`; this module only makes the broadcast's health visible: every process
publishes a canary through the manager each second and must hear it back within a few seconds,
or `/readyz` says not ready.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import socketio
from socketio.packet import Packet

from socketsvc.runtime import metrics
from socketsvc.transport.managers import LeanManager, Target

log = logging.getLogger(__name__)

CANARY_SID = "__socketsvc_canary__"
CANARY_INTERVAL = 1.0
CANARY_DEADLINE = 3.0
"""Deaf when no canary came back for this long."""
MAX_RESUBSCRIBE_DELAY = 2.0
MAX_OUTBOX = 10_000
"""Publishes kept while Redis does not take them; the oldest are dropped beyond this."""


class RedisManager(socketio.AsyncRedisManager, LeanManager):  # type: ignore[misc]
    """`AsyncRedisManager` that publishes from a queue in pipelines (emits never wait for
    Redis), counts dropped publishes, hears its canary, resubscribes within seconds (instead of
    backing off to a minute) after Redis comes back, and sends an emit to several rooms as one
    message.

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

    async def _publish(self, data: Any) -> None:
        """Queue `data` for the publisher task and return at once.

        An emit (and so a handler and its ack) never waits for Redis: the messages queued while
        one round trip is in flight go out together in one pipeline, in order. While Redis is
        unreachable at most MAX_OUTBOX messages wait; older ones are dropped (and counted), as
        python-socketio drops a publish that fails twice.
        """
        if len(self._outbox) >= MAX_OUTBOX:
            self._outbox.popleft()
            metrics.REDIS_PUBLISH_FAILURES.inc()
        self._outbox.append(data)
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_outbox())

    async def _publish_outbox(self) -> None:
        while self._outbox:
            batch = [self._outbox.popleft() for _ in range(min(len(self._outbox), 1000))]
            payloads = [self.json.dumps(data) for data in batch]
            for attempt in (1, 2):
                try:
                    if not getattr(self, "connected", False):
                        self._redis_connect()
                    async with self.redis.pipeline(transaction=False) as pipe:
                        for payload in payloads:
                            pipe.publish(self.channel, payload)
                        await pipe.execute()
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.connected = False
                    if attempt == 1:
                        log.error("cannot publish to Redis (%s); retrying", exc)
                    else:
                        log.error("cannot publish to Redis (%s); dropped %d", exc, len(batch))
                        metrics.REDIS_PUBLISH_FAILURES.inc(len(batch))

    async def emit_to_rooms(
        self, event: str, data: Any, targets: Sequence[Target], skip_sid: Any = None
    ) -> None:
        """Emit the same event to several (namespace, room) targets with one Redis message.

        The message is python-socketio's `emit` message for the first target plus `targets`,
        the whole list. Every process of this release delivers it to each target; a process of
        an older release (during a rolling restart) reads it as a plain emit to the first
        target only. One target is a plain emit.
        """
        if not targets:
            return
        namespace, room = targets[0]
        if len(targets) == 1:
            await self.emit(event, data, namespace=namespace, room=room, skip_sid=skip_sid)
            return
        # The data as AsyncPubSubManager.emit packs it.
        args = list(data) if isinstance(data, tuple) else [data]
        binary = Packet.data_is_binary(args)
        if binary:
            args, attachments = Packet.deconstruct_binary(args)
            args = [args, *[base64.b64encode(a).decode() for a in attachments]]
        message = {
            "method": "emit",
            "event": event,
            "data": args,
            "binary": binary,
            "namespace": namespace,
            "room": room,
            "skip_sid": skip_sid,
            "callback": None,
            "host_id": self.host_id,
            "targets": [[namespace, room] for namespace, room in targets],
        }
        await self._handle_emit(message)  # this process's connections
        await self._publish(message)  # the other processes'

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        targets = message.get("targets")
        if targets is None:  # python-socketio's own emit message
            await super()._handle_emit(message)
            return
        for namespace, room in targets:
            await super()._handle_emit({**message, "namespace": namespace, "room": room})

    async def _handle_callback(self, message: dict[str, Any]) -> None:
        if message.get("sid") == CANARY_SID:
            if message.get("host_id") == self.host_id:
                self.canary_heard_at = time.monotonic()
            return
        await super()._handle_callback(message)

    async def send_canary(self) -> None:
        self._canary_seq += 1
        await self._publish(
            {
                "method": "callback",
                "host_id": self.host_id,
                "sid": CANARY_SID,
                "namespace": "/",
                "id": self._canary_seq,
                "args": [],
            }
        )

    @property
    def canary_ok(self) -> bool:
        """True while this process heard its own canary within the deadline."""
        reference = max(self.canary_heard_at, self.canary_started_at)
        heard_recently = time.monotonic() - reference < CANARY_DEADLINE
        return heard_recently and self.canary_heard_at > 0

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
        for client in (self.pubsub, self.redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def ping(self) -> None:
        """Raise unless Redis answers PING."""
        if self.redis is None:
            self._redis_connect()
        await self.redis.ping()

    async def _redis_listen_with_retries(self) -> AsyncIterator[Any]:  # pragma: no cover
        # The parent's loop, with the retry delay capped at MAX_RESUBSCRIBE_DELAY seconds.
        delay = 0.25
        subscribed = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    await self.pubsub.subscribe(self.channel)
                    subscribed = True
                    delay = 0.25
                    log.info("subscribed to Redis channel %s", self.channel)
                async for message in self.pubsub.listen():
                    yield message
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if subscribed:
                    log.error("lost the Redis subscription (%s); retrying", exc)
                subscribed = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RESUBSCRIBE_DELAY)
