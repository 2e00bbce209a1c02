"""`BotRunner` with a `StreamingBot`: drafts throttled and cumulative, one stored message naming
its draft, a failure mid-stream discarded (nothing stored), a fallback after a failed stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from prometheus_client import REGISTRY

from socketsvc.bots.base import BotContext, BotReply, StreamingBot
from socketsvc.domain.models import Role
from socketsvc.services import Services
from socketsvc.storage.store import Store
from tests.conftest import make_settings
from tests.support.broadcasting import RecordingBroadcaster


class Scripted:
    """Streams `pieces` 0.12 s apart, then `end` (a BotReply, or an exception raised)."""

    name = "Streamer"

    def __init__(self, pieces: list[str], end: BotReply | Exception) -> None:
        self.pieces = pieces
        self.end = end
        self.closed = False

    async def greeting(self, ctx: BotContext) -> str:
        return "hello"

    async def reply(self, ctx: BotContext, text: str) -> BotReply:
        raise NotImplementedError

    async def stream(self, ctx: BotContext, text: str) -> AsyncIterator[str | BotReply]:
        try:
            for piece in self.pieces:
                await asyncio.sleep(0.12)
                yield piece
            if isinstance(self.end, Exception):
                raise self.end
            yield self.end
        finally:
            self.closed = True

    async def close(self) -> None:
        pass


def errors() -> float:
    return REGISTRY.get_sample_value("socketsvc_bot_errors_total") or 0.0


async def run(database_url: str, store: Store, bot: Scripted) -> tuple[RecordingBroadcaster, str]:
    assert isinstance(bot, StreamingBot)
    broadcast = RecordingBroadcaster()
    services = Services.build(make_settings(database_url, BOT="echo"), store, broadcast, bot)
    session = await services.conversations.open_session(None)
    await services.conversations.post_visitor_message(
        session.visitor,
        session.conversation_id,
        "c",
        "hi",
        started=session.conversation is not None,
    )
    await services.tasks.drain(timeout=10.0)
    assert len(services.tasks) == 0
    return broadcast, session.conversation_id


async def test_drafts_then_one_stored_message(database_url: str, store: Store):
    bot = Scripted(["a", "b", "c", "d"], BotReply("abcd", matched=True))
    broadcast, cid = await run(database_url, store, bot)
    deltas = broadcast.events("message_delta")
    assert [d["text"] for d in deltas] == ["a", "ab", "abc", "abcd"]
    (reply,) = broadcast.bot_messages()
    assert reply["text"] == "abcd" and reply["seq"] == 3
    assert {d["draft_id"] for d in deltas} == {reply["draft_id"]}
    typing = [e["typing"] for e in broadcast.events("typing")]
    assert typing in ([], [True, False])  # true only if the first piece took over 0.25 s
    assert [m.sender.role for m in await store.messages_after(cid, 0, 10)] == [
        Role.BOT,
        Role.VISITOR,
        Role.BOT,
    ]


async def test_a_failure_mid_stream_discards_the_draft(database_url: str, store: Store):
    before = errors()
    bot = Scripted(["a", "b"], RuntimeError("the model fell over"))
    broadcast, cid = await run(database_url, store, bot)
    deltas = broadcast.events("message_delta")
    assert deltas[-1] == {**deltas[0], "text": "", "discarded": True}
    assert broadcast.bot_messages() == []
    assert len(await store.messages_after(cid, 0, 10)) == 2
    assert errors() == before + 1 and bot.closed


async def test_a_fallback_after_a_failed_stream_is_a_message_of_its_own(
    database_url: str, store: Store
):
    fallback = BotReply("Sorry.", matched=False, keeps_draft=False)
    broadcast, _ = await run(database_url, store, Scripted(["a", "b"], fallback))
    kinds = [
        (e, d.get("discarded", False))
        for _, e, d in broadcast.calls
        if e in ("message_delta", "message")
    ]
    assert kinds[-2:] == [("message_delta", True), ("message", False)]
    (reply,) = broadcast.bot_messages()
    assert reply["text"] == "Sorry." and "draft_id" not in reply
