"""Gives visitor messages to external bot workers (`/bot`) and takes their replies.

With `BOT=workers:NAME`, each visitor message in a conversation with the bot becomes a delivery
(`ports.BotDeliveries`, in the database, so it survives a process kill). Every process claims
deliveries for its own connected workers, a few at a time each (a lease of
`BOT_REDELIVERY_TIMEOUT`), and sends them over `ports.WorkerChannel`. A worker answers with a
reply (`message`, `handoff`, `resolve`) or `done`; one that disconnects or lets its lease run out
has its deliveries given to another worker. Replies are idempotent by the delivery and the
worker's `client_id`, so a redelivered message is never answered twice in the store. A delivery
that no worker took within `BOT_TIMEOUT` goes to `BOT_FALLBACK`: the built-in bot or the queue.
Knows nothing of Socket.IO or SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from socketsvc.bots.base import CONVERSATION_RESOLVED
from socketsvc.domain import payloads
from socketsvc.domain.bot_runner import BotRunner
from socketsvc.domain.conversations import ConversationService
from socketsvc.domain.errors import Conflict, NotFound, StorageUnavailable
from socketsvc.domain.models import BotDelivery, Conversation, Message, Role, Sender, State
from socketsvc.domain.ports import BotDeliveries, ConversationStore, WorkerChannel
from socketsvc.domain.routing import RoutingService
from socketsvc.runtime import metrics
from socketsvc.runtime.tasks import TaskTracker

log = logging.getLogger(__name__)

POLL = 0.2
"""Seconds between claims while this process has workers (new deliveries made here wake it
at once; those made by other processes are found by the next poll)."""
SWEEP = 0.5
"""Seconds between looks for expired leases and deliveries no worker took."""
PURGE = 300.0
HISTORY = 10
"""Messages of context sent with each delivery (the visitor's message is the last)."""
DEFAULT_CAPACITY = 10
MAX_CAPACITY = 100
NOT_YOURS = (
    "this delivery is not yours: unknown, or given to another worker after yours disconnected "
    "or its lease ran out"
)


@dataclass
class _Worker:
    id: str
    capacity: int
    held: set[str] = field(default_factory=set)


class BotDispatch:
    """The external bot `bot`'s deliveries, for the workers connected to this process."""

    def __init__(
        self,
        deliveries: BotDeliveries,
        store: ConversationStore,
        conversations: ConversationService,
        routing: RoutingService,
        runner: BotRunner,
        channel: WorkerChannel,
        tasks: TaskTracker,
        *,
        bot: str,
        fallback: str,
        timeout: float,
        redelivery: float,
    ) -> None:
        self.deliveries = deliveries
        self.store = store
        self.conversations = conversations
        self.routing = routing
        self.runner = runner
        self.channel = channel
        self.tasks = tasks
        self.bot = bot
        self.fallback = fallback
        self.timeout = timeout
        self.redelivery = redelivery
        self.sender = Sender(Role.BOT, "bot", bot)
        self._workers: dict[str, _Worker] = {}
        self._wake = asyncio.Event()

    # visitor side -----------------------------------------------------------------------------

    def schedule(self, conversation: Conversation, message: Message) -> None:
        """Hand `message` to a worker soon, if the conversation is (still) with the bot."""
        if conversation.state != State.BOT:
            return
        self.tasks.spawn(self._enqueue(conversation, message), name=f"bot:{conversation.id}")

    async def _enqueue(self, conversation: Conversation, message: Message) -> None:
        try:
            await self.deliveries.add(message.id, conversation.id, message.seq, self.bot)
        except Exception:
            # The visitor's message is stored; without its delivery the built-in bot answers.
            log.exception(
                "could not record a bot delivery", extra={"conversation_id": conversation.id}
            )
            await self.runner.answer(conversation, message)
            return
        self._wake.set()

    # workers ----------------------------------------------------------------------------------

    def connected(self, worker: str, capacity: int | None = None) -> None:
        """A worker of the bot connected to this process; `capacity`: deliveries at a time."""
        self._workers[worker] = _Worker(worker, min(capacity or DEFAULT_CAPACITY, MAX_CAPACITY))
        self._wake.set()

    async def disconnected(self, worker: str) -> None:
        """Give the worker's deliveries to the others."""
        if self._workers.pop(worker, None) is None:
            return
        released = await self.deliveries.release_worker(worker)
        if released:
            log.info("bot worker %s left: %d deliveries given back", worker, released)
        self._wake.set()

    @property
    def workers(self) -> int:
        """Workers connected to this process."""
        return len(self._workers)

    async def reply(
        self,
        worker: str,
        delivery_id: str,
        client_id: str | None,
        text: str,
        *,
        matched: bool = True,
        offer_human: bool = False,
    ) -> Message:
        """Store and publish a worker's reply to its delivery (a retry returns the first)."""
        delivery = await self._held(worker, delivery_id)
        conversation = await self._conversation(delivery)
        appended = await self.store.append_bot_message(
            delivery.conversation_id,
            self.sender,
            text,
            f"{delivery.id}:{client_id or 'reply'}",
            bot_fallbacks=0 if matched else conversation.bot_fallbacks + 1,
            human_offered=offer_human,
        )
        if appended is None:
            await self._finish(worker, delivery)
            metrics.BOT_SUPPRESSED.inc()
            raise Conflict("the conversation is no longer with the bot: the reply was not stored")
        if appended.created:
            assert appended.conversation is not None
            await self.conversations.publish(appended.conversation, appended.message)
            if not matched:
                metrics.BOT_FALLBACKS.inc()
        else:
            metrics.DUPLICATES.inc()
        await self._finish(worker, delivery)
        return appended.message

    async def typing(self, worker: str, delivery_id: str, typing: bool) -> None:
        delivery = await self._held(worker, delivery_id)
        conversation = await self._conversation(delivery)
        if conversation.state == State.BOT:
            await self.conversations.typing(conversation, self.sender, typing)

    async def handoff(
        self, worker: str, delivery_id: str, reason: str | None, summary: str | None
    ) -> Conversation:
        """Queue the delivery's conversation for a human, with the bot's summary for the agent."""
        delivery = await self._held(worker, delivery_id)
        conversation = await self.routing.handoff(
            delivery.conversation_id,
            reason,
            by="bot",
            summary=summary,
            from_states=(State.BOT,),
        )
        await self._finish(worker, delivery)
        return conversation

    async def resolve(self, worker: str, delivery_id: str) -> Conversation:
        delivery = await self._held(worker, delivery_id)
        changed = await self.store.resolve_from_bot(
            delivery.conversation_id, "The bot marked this conversation as resolved."
        )
        await self._finish(worker, delivery)
        if changed is None:
            current = await self._conversation(delivery)
            if current.state != State.RESOLVED:
                raise Conflict(f"the conversation is no longer with the bot ({current.state})")
            return current
        self.conversations.notify(CONVERSATION_RESOLVED, changed.conversation)
        for message in changed.messages:
            await self.conversations.publish(changed.conversation, message)
        await self.conversations.publish_state(changed.conversation)
        return changed.conversation

    async def done(self, worker: str, delivery_id: str) -> None:
        """The worker handled the delivery without a reply."""
        await self._finish(worker, await self._held(worker, delivery_id))

    async def _held(self, worker: str, delivery_id: str) -> BotDelivery:
        delivery = await self.deliveries.held(delivery_id, worker)
        if delivery is None:
            raise Conflict(NOT_YOURS)
        return delivery

    async def _conversation(self, delivery: BotDelivery) -> Conversation:
        conversation = await self.store.get_conversation(delivery.conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        return conversation

    async def _finish(self, worker: str, delivery: BotDelivery) -> None:
        if delivery.state == "claimed":
            await self.deliveries.complete(delivery.id, worker)
        held = self._workers.get(worker)
        if held is not None:
            held.held.discard(delivery.id)
        self._wake.set()

    # the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim deliveries for this process's workers; give back expired leases; send what no
        worker took in time to the fallback. Runs until cancelled."""
        loop = asyncio.get_running_loop()
        last_sweep = last_purge = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if self._workers:
                    await self._claim()
                now = loop.time()
                if now - last_sweep >= SWEEP:
                    last_sweep = now
                    await self._sweep()
                if now - last_purge >= PURGE:
                    last_purge = now
                    await self.deliveries.purge()
            except StorageUnavailable:
                log.debug("bot dispatch waits: the database is unavailable")
                await asyncio.sleep(POLL)
            except Exception:
                log.exception("bot dispatch failed")
                await asyncio.sleep(POLL)

    async def _claim(self) -> None:
        for worker in list(self._workers.values()):
            free = worker.capacity - len(worker.held)
            if free <= 0:
                continue
            claimed = await self.deliveries.claim(self.bot, worker.id, free, self.redelivery)
            if worker.id not in self._workers:  # it left while claiming
                await self.deliveries.release_worker(worker.id)
                continue
            for delivery in claimed:
                worker.held.add(delivery.id)
                payload = await self._payload(delivery)
                metrics.BOT_DELIVERIES.labels(
                    attempt="first" if delivery.attempts == 1 else "again"
                ).inc()
                await self.channel.to_worker(worker.id, "visitor_message", payload)

    async def _payload(self, delivery: BotDelivery) -> dict[str, Any]:
        """The `visitor_message` event: the message with the context to answer it."""
        conversation = await self._conversation(delivery)
        visitor = await self.store.get_visitor(conversation.visitor_id)
        history = await self.store.messages_after(
            delivery.conversation_id, max(0, delivery.seq - HISTORY), HISTORY
        )
        history = [m for m in history if m.seq <= delivery.seq]
        message = next((m for m in history if m.id == delivery.id), None)
        return {
            "delivery_id": delivery.id,
            "attempt": delivery.attempts,
            "conversation_id": delivery.conversation_id,
            "message": None if message is None else message.to_dict(),
            "visitor": {
                "id": conversation.visitor_id,
                "name": visitor.name if visitor is not None else "Visitor",
            },
            "conversation": {
                **payloads.state(conversation),
                "last_seq": conversation.last_seq,
                "bot_fallbacks": conversation.bot_fallbacks,
                "human_offered": conversation.human_offered,
            },
            "history": [m.to_dict() for m in history],
        }

    async def _sweep(self) -> None:
        for delivery_id, worker in await self.deliveries.release_expired():
            held = self._workers.get(worker)
            if held is not None:
                held.held.discard(delivery_id)
                log.info("bot worker %s did not answer in time: delivery given back", worker)
            self._wake.set()
        for delivery in await self.deliveries.take_stale(self.bot, self.timeout):
            await self._fall_back(delivery)
        # Another process's sweep may have given back what a worker here held.
        for local in list(self._workers.values()):
            if local.held:
                local.held &= await self.deliveries.holding(local.id)

    async def _fall_back(self, delivery: BotDelivery) -> None:
        """No worker took the delivery within BOT_TIMEOUT: the built-in bot or the queue."""
        conversation = await self.store.get_conversation(delivery.conversation_id)
        if conversation is None or conversation.state != State.BOT:
            return
        metrics.BOT_WORKER_FALLBACKS.labels(fallback=self.fallback).inc()
        log.info(
            "no bot worker took a message within %gs: %s",
            self.timeout,
            self.fallback,
            extra={"conversation_id": conversation.id},
        )
        if self.fallback == "queue":
            await self.routing.handoff(
                conversation.id, "no bot worker answered", by="bot", from_states=(State.BOT,)
            )
            return
        found = await self.store.messages_after(conversation.id, delivery.seq - 1, 1)
        if found and found[0].id == delivery.id:
            await self.runner.answer(conversation, found[0])
