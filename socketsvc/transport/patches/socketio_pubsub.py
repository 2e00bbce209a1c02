"""python-socketio: four private methods of `AsyncRedisManager` / `AsyncPubSubManager`
(`_publish`, `_handle_emit`, `_handle_callback`, `_redis_listen_with_retries`) and the server's
`manager_initialized`, for `CanaryPubSub`.

The canary rides python-socketio's `callback` messages (with a sid no client has); an emit to
several rooms is one `emit` message with a `targets` list. On the stock path the manager is
`pubsub.RedisManager`, python-socketio's `AsyncRedisManager` with none of these: no canary
(readiness checks Redis with PING only), a publish waits for Redis, resubscribing backs off up
to a minute, and the manager subscribes on the first connection.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import socketio
from socketio.packet import Packet

from socketsvc.runtime import metrics
from socketsvc.transport.patches import Patch, Requirement

log = logging.getLogger("socketsvc.transport.pubsub")

SOCKETIO = Requirement("python-socketio", "5.18", "5.19")
"""5.18 is the first with the manager's `json` and the emit message's list-to-tuple unpacking
that `_publish_outbox` and `emit_to_rooms` follow."""

PATCH = Patch(
    name="socketio.pubsub_canary",
    why=(
        "publishes from a queue in pipelines, hears a canary for /readyz, resubscribes within "
        "seconds, sends an emit to several rooms as one message"
    ),
    requires=(SOCKETIO,),
    upstream={
        "socketio.async_redis_manager:AsyncRedisManager._publish": "033e4da7cc8768b4",
        "socketio.async_redis_manager:AsyncRedisManager._redis_listen_with_retries": (
            "ad347f253fd3423a"
        ),
        "socketio.async_redis_manager:AsyncRedisManager._redis_connect": "da4530c936323c25",
        "socketio.async_pubsub_manager:AsyncPubSubManager._handle_emit": "4284671be955f644",
        "socketio.async_pubsub_manager:AsyncPubSubManager._handle_callback": "e637e7708127b711",
        "socketio.async_pubsub_manager:AsyncPubSubManager._thread": "fa8d075729aac64d",
        "socketio.async_pubsub_manager:AsyncPubSubManager.emit": "6cc46e0ff9b6d7cf",
        "socketio.async_server:AsyncServer._handle_eio_connect": "76704886d944a7e6",
    },
)

CANARY_SID = "__socketsvc_canary__"
CANARY_DEADLINE = 3.0
"""Deaf when no canary came back for this long."""
MAX_RESUBSCRIBE_DELAY = 2.0
MAX_OUTBOX = 10_000
"""Publishes kept while Redis does not take them; the oldest are dropped beyond this."""


def initialize_now(sio: socketio.AsyncServer) -> None:
    """Subscribe now rather than on the first connection, so the canary works at once (what
    python-socketio's `_handle_eio_connect` does on the first connection)."""
    if not sio.manager_initialized:
        sio.manager_initialized = True
        sio.manager.initialize()


class CanaryPubSub(socketio.AsyncRedisManager):  # type: ignore[misc]
    """The private overrides of `pubsub.CanaryRedisManager` (which puts them before
    python-socketio's classes in its bases). The attributes they use (`_outbox`, `_publisher`,
    `canary_heard_at`, `canary_started_at`, `_canary_seq`) are set by `pubsub.RedisManager`."""

    _outbox: Any
    _publisher: asyncio.Task[None] | None
    canary_heard_at: float
    canary_started_at: float
    _canary_seq: int

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
        self, event: str, data: Any, targets: Sequence[tuple[str, str]], skip_sid: Any = None
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
