"""Runs the bot for each new visitor message, and keeps it silent outside the `bot` state."""

from __future__ import annotations

import asyncio
import logging
import time

from socketsvc.bots.base import Bot, BotContext, BotReply, StreamingBot
from socketsvc.domain import payloads
from socketsvc.domain.conversations import ConversationService, bot_sender
from socketsvc.domain.models import Append, Conversation, Message, Sender, State, new_id
from socketsvc.domain.ports import ConversationStore
from socketsvc.domain.routing import RoutingService
from socketsvc.runtime import metrics
from socketsvc.runtime.tasks import Deadline, KeyedLocks, TaskTracker

log = logging.getLogger(__name__)


RUNNER_TIMEOUT = 30.0
"""Seconds a bot may take for one reply (more when BOT_TIMEOUT is longer: services.py)."""
TYPING_AFTER = 0.25
"""Seconds a bot may think before the visitor sees it typing; a quicker reply gets the typing
pair right before it, and a bot that quickly decides to say nothing sends no typing at all."""
DELTA_INTERVAL = 0.1
"""Seconds between two `message_delta` events of a streamed reply (at most 10 a second); each
one first checks that the conversation is still with the bot."""


class BotRunner:
    """Answers visitor messages in the background, one at a time per conversation.

    The bot's reply is stored with a condition on the conversation's state in the same
    statement that numbers it, so a reply computed while a handoff happened is dropped. Nothing
    is read from the database: the conversation comes from the visitor message's own write, or
    from this runner's previous reply in the conversation, whichever is later.
    """

    def __init__(
        self,
        store: ConversationStore,
        conversations: ConversationService,
        routing: RoutingService,
        bot: Bot,
        tasks: TaskTracker,
        timeout: float = RUNNER_TIMEOUT,
    ) -> None:
        self.store = store
        self.conversations = conversations
        self.routing = routing
        self.bot = bot
        self.tasks = tasks
        self.timeout = timeout
        self._streaming = bot if isinstance(bot, StreamingBot) else None
        history = getattr(bot, "history", 0)
        self._history = history if isinstance(history, int) and history > 0 else 0
        self._locks = KeyedLocks()
        self._after_reply: dict[str, Conversation] = {}
        self._waiting: dict[str, int] = {}

    def schedule(self, conversation: Conversation, message: Message) -> None:
        """Answer `message` soon, if the conversation is (still) with the bot."""
        if conversation.state != State.BOT:
            return
        key = conversation.id
        self._waiting[key] = self._waiting.get(key, 0) + 1
        self.tasks.spawn(self._answer_next(conversation, message), name=f"bot:{key}")

    async def _answer_next(self, conversation: Conversation, message: Message) -> None:
        key = conversation.id
        try:
            await self.answer(conversation, message)
        finally:
            left = self._waiting[key] - 1
            if left:
                self._waiting[key] = left
            else:
                del self._waiting[key]
                self._after_reply.pop(key, None)

    async def answer(self, conversation: Conversation, message: Message) -> Message | None:
        """Let the bot answer `message` of `conversation` (as it was when `message` was stored)."""
        async with self._locks.hold(conversation.id):
            latest = self._after_reply.get(conversation.id)
            if latest is not None and latest.last_seq > conversation.last_seq:
                conversation = latest
            if conversation.state != State.BOT:
                return None
            if self._streaming is not None:
                return await self._answer_streaming(self._streaming, conversation, message)
            typing = _Typing(self.conversations, conversation, bot_sender(self.bot))
            timer = asyncio.get_running_loop().call_later(TYPING_AFTER, typing.start)
            try:
                reply = await self._reply(conversation, message)
            finally:
                timer.cancel()
            stored = None
            try:
                if reply is not None and reply.text:
                    await typing.on()
                    stored = await self._store(conversation, reply)
            finally:
                await typing.off()
            if reply is None:
                return None
            if reply.text:
                if stored is None or not stored.created:
                    return None if stored is None else stored.message
                assert stored.conversation is not None
                await self.conversations.publish(stored.conversation, stored.message)
                await self._store_more(stored.conversation, reply)
            if reply.handoff:
                await self._handoff(conversation.id, reply)
            return None if stored is None else stored.message

    async def _store_more(self, conversation: Conversation, reply: BotReply) -> None:
        """Store and publish a reply's further messages (`BotReply.more`), in order."""
        for index, text in enumerate(reply.more, start=1):
            client_id = None if reply.client_id is None else f"{reply.client_id}:{index}"
            stored = await self._store(conversation, reply, text, client_id)
            if stored is None:
                return
            if stored.created:
                assert stored.conversation is not None
                conversation = stored.conversation
                await self.conversations.publish(conversation, stored.message)

    async def _handoff(self, conversation_id: str, reply: BotReply) -> None:
        await self.routing.handoff(
            conversation_id,
            reason=reply.handoff_reason or "visitor asked the bot",
            by="bot",
            summary=reply.handoff_summary,
            from_states=(State.BOT,),
        )

    async def _answer_streaming(
        self, bot: StreamingBot, conversation: Conversation, message: Message
    ) -> Message | None:
        """`answer` for a bot that streams: the text so far goes out as `message_delta` (a
        draft), at most every `DELTA_INTERVAL`; the complete reply is stored as one message
        whose `message` event names the draft. A handoff meanwhile (seen before each delta, or
        when the reply is stored) or a failure discards the draft: a last `message_delta` with
        `discarded: true`, and nothing stored."""
        sender = bot_sender(self.bot)
        draft = _Draft(self.conversations, conversation, sender)
        typing = _Typing(self.conversations, conversation, sender)
        timer = asyncio.get_running_loop().call_later(TYPING_AFTER, typing.start)
        reply: BotReply | None = None
        left = False
        pieces = bot.stream(await self._context(conversation, message), message.text)
        try:
            with Deadline(self.timeout):
                async for item in pieces:
                    if isinstance(item, BotReply):
                        reply = item
                        break
                    draft.add(item)
                    if not draft.due():
                        continue
                    if not await self._with_bot(conversation.id):
                        left = True
                        break
                    timer.cancel()
                    await typing.off()  # the growing draft shows that the bot is writing
                    await draft.publish()
        except Exception:
            log.exception("bot failed to answer", extra={"conversation_id": conversation.id})
            metrics.BOT_ERRORS.inc()
        finally:
            timer.cancel()
            await _close(pieces, conversation.id)  # stops the generation (the HTTP response)
        if left:
            metrics.BOT_SUPPRESSED.inc()
            log.info(
                "streamed bot reply dropped: conversation left the bot state",
                extra={"conversation_id": conversation.id},
            )
        if reply is None or not reply.keeps_draft:
            await draft.discard()
        stored = None
        try:
            if reply is not None:
                if not draft.published:
                    await typing.on()
                stored = await self._store(conversation, reply)
        finally:
            await typing.off()
        if stored is None:
            await draft.discard()
            return None
        assert stored.conversation is not None and reply is not None
        await self.conversations.publish(
            stored.conversation,
            stored.message,
            draft.id if draft.published and not draft.discarded else None,
        )
        if reply.handoff:
            await self._handoff(conversation.id, reply)
        return stored.message

    async def _with_bot(self, conversation_id: str) -> bool:
        current = await self.store.get_conversation(conversation_id)
        return current is not None and current.state == State.BOT

    async def _context(self, conversation: Conversation, message: Message) -> BotContext:
        """What the bot is told of the message; with `history`, the messages before it too
        (none if they cannot be read: the bot answers all the same)."""
        recent: tuple[dict[str, object], ...] = ()
        if self._history:
            try:
                found = await self.store.messages_after(
                    conversation.id, max(0, message.seq - self._history - 1), self._history + 1
                )
                recent = tuple(m.to_dict() for m in found if m.seq < message.seq)
            except Exception:
                log.warning(
                    "could not read the messages before a visitor message for the bot",
                    exc_info=True,
                    extra={"conversation_id": conversation.id},
                )
        return BotContext(
            conversation_id=conversation.id,
            visitor_name=message.sender.name,
            consecutive_fallbacks=conversation.bot_fallbacks,
            human_offered=conversation.human_offered,
            message=message.to_dict(),
            conversation=payloads.conversation_ref(conversation),
            recent=recent[-self._history :] if recent else (),
        )

    async def _reply(self, conversation: Conversation, message: Message) -> BotReply | None:
        ctx = await self._context(conversation, message)
        try:
            with Deadline(self.timeout):
                return await self.bot.reply(ctx, message.text)
        except Exception:
            log.exception("bot failed to answer", extra={"conversation_id": conversation.id})
            metrics.BOT_ERRORS.inc()
            return None

    async def _store(
        self,
        conversation: Conversation,
        reply: BotReply,
        text: str | None = None,
        client_id: str | None = None,
    ) -> Append | None:
        """Store `text` (default: the reply's), idempotently by `client_id` (default: the
        reply's) when there is one; None when the conversation left the bot. An `Append` that
        was not `created` is a repeat: nothing new to publish."""
        bot_fallbacks = 0 if reply.matched else conversation.bot_fallbacks + 1
        client_id = reply.client_id if text is None else client_id
        if client_id is None:
            appended = await self.store.append_bot_reply(
                conversation.id,
                bot_sender(self.bot),
                reply.text if text is None else text,
                bot_fallbacks=bot_fallbacks,
                human_offered=reply.offer_human,
            )
        else:
            appended = await self.store.append_bot_message(
                conversation.id,
                bot_sender(self.bot),
                reply.text if text is None else text,
                client_id,
                bot_fallbacks=bot_fallbacks,
                human_offered=reply.offer_human,
            )
            if appended is not None and not appended.created:
                metrics.DUPLICATES.inc()
                return appended
        if appended is None:
            metrics.BOT_SUPPRESSED.inc()
            log.info(
                "bot reply dropped: conversation left the bot state",
                extra={"conversation_id": conversation.id},
            )
            return None
        assert appended.conversation is not None
        self._after_reply[conversation.id] = appended.conversation
        if not reply.matched:
            metrics.BOT_FALLBACKS.inc()
        return appended


async def _close(pieces: object, conversation_id: str) -> None:
    """Close a bot's stream (an async generator's `aclose`), whatever it raises."""
    aclose = getattr(pieces, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        log.warning(
            "closing the bot's stream failed",
            exc_info=True,
            extra={"conversation_id": conversation_id},
        )


class _Draft:
    """A streamed reply's text so far, and whether (and when) it was last sent."""

    def __init__(
        self, conversations: ConversationService, conversation: Conversation, sender: Sender
    ) -> None:
        self.conversations = conversations
        self.conversation = conversation
        self.sender = sender
        self.id = new_id()
        self.text = ""
        self.published = False
        self.discarded = False
        self._sent_at = 0.0
        self._sent_text = ""

    def add(self, piece: str) -> None:
        self.text += piece

    def due(self) -> bool:
        """Something new to send, and `DELTA_INTERVAL` since the last delta."""
        return self.text != self._sent_text and (time.monotonic() - self._sent_at >= DELTA_INTERVAL)

    async def publish(self) -> None:
        self._sent_at, self._sent_text = time.monotonic(), self.text
        self.published = True
        await self.conversations.publish_delta(self.conversation, self.id, self.sender, self.text)

    async def discard(self) -> None:
        """Tell the clients to drop the draft (once, and only if they have seen it)."""
        if self.published and not self.discarded:
            self.discarded = True
            await self.conversations.publish_delta(
                self.conversation, self.id, self.sender, "", discarded=True
            )


class _Typing:
    """The bot's typing pair: `true` once (by a timer or before a reply), `false` only after it."""

    def __init__(
        self, conversations: ConversationService, conversation: Conversation, sender: Sender
    ) -> None:
        self.conversations = conversations
        self.conversation = conversation
        self.sender = sender
        self._sent: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Send `true` from a timer callback (in a task, so it cannot block the bot)."""
        if self._sent is None:
            self._sent = asyncio.ensure_future(self._send(True))

    async def on(self) -> None:
        self.start()
        assert self._sent is not None
        await self._sent

    async def off(self) -> None:
        """Send `false` after a `true` (once: a second call sends nothing)."""
        if self._sent is not None:
            sent, self._sent = self._sent, None
            await sent
            await self._send(False)

    async def _send(self, typing: bool) -> None:
        await self.conversations.typing(self.conversation, self.sender, typing)
