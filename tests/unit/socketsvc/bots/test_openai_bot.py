"""The LLM bot's own logic: retrieval, the request, chunk parsing, tool calls and fallbacks,
over a `ChatCompletions` that replays scripted chunks (the HTTP side is tested against a real
server in tests/integration/bots)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from socketsvc.bots.base import BotContext, BotReply, StreamingBot
from socketsvc.bots.kb_bot import KnowledgeBaseBot
from socketsvc.bots.knowledge import load_default_knowledge_base
from socketsvc.bots.openai_bot import (
    UNAVAILABLE,
    CompletionError,
    LLMConfig,
    OpenAIBot,
    build_request,
    retrieve,
)
from socketsvc.runtime import metrics

KB = load_default_knowledge_base()
CTX = BotContext("c1", "Visitor")


class Scripted:
    def __init__(self, chunks: list[Any], error: CompletionError | None = None) -> None:
        self.chunks = chunks
        self.error = error
        self.requests: list[Mapping[str, Any]] = []

    async def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        self.requests.append(request)
        for chunk in self.chunks:
            yield chunk
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        pass


def content(text: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def bot(completions: Scripted) -> OpenAIBot:
    return OpenAIBot(KnowledgeBaseBot(KB), LLMConfig(model="m", max_tokens=99), completions)


async def collect(b: OpenAIBot, text: str, ctx: BotContext = CTX) -> list[str | BotReply]:
    return [item async for item in b.stream(ctx, text)]


def test_retrieve_ranks_the_matching_entry_first():
    best = KnowledgeBaseBot(KB).match("how do I scale it")
    assert best is not None
    top = retrieve(KB, "how do I scale it", 3)
    assert len(top) == 3 and top[0] == best.intent
    assert retrieve(KB, "", 3) == [] and retrieve(KB, "scale", 0) == []


def test_request_shape():
    request = build_request(LLMConfig(model="m", max_tokens=99), KB, "how do I scale it")
    assert request["model"] == "m" and request["stream"] is True and request["max_tokens"] == 99
    assert [t["function"]["name"] for t in request["tools"]] == ["handoff"]
    assert request["messages"][1] == {"role": "user", "content": "how do I scale it"}
    assert retrieve(KB, "how do I scale it", 1)[0].answer in request["messages"][0]["content"]


async def test_streams_pieces_then_the_whole_reply():
    b = bot(
        Scripted(
            [{"choices": [{"delta": {"role": "assistant"}}]}, content("Hi "), content("there ")]
        )
    )
    assert isinstance(b, StreamingBot)
    items = await collect(b, "hello")
    assert items[:2] == ["Hi ", "there "]
    assert items[2] == BotReply("Hi there", matched=True)
    assert await b.reply(CTX, "hello") == BotReply("Hi there", matched=True)


async def test_tool_call_hands_off_with_the_text_or_the_kb_line():
    call = {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "hand"}}]}}]}
    rest = {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "off"}}]}}]}
    (reply,) = await collect(bot(Scripted([call, rest, {"choices": []}])), "a human please")
    assert isinstance(reply, BotReply)
    assert reply.handoff and reply.text == KB.handoff_reply and not reply.keeps_draft
    *_, said = await collect(bot(Scripted([content("One moment."), call, rest])), "human")
    assert isinstance(said, BotReply) and said.handoff and said.text == "One moment."
    assert said.keeps_draft


@pytest.mark.parametrize(
    ("chunks", "error", "kind"),
    [
        ([], CompletionError("http", "HTTP 500"), "http"),
        ([content("part")], CompletionError("timeout", "slow"), "timeout"),
        (["not a dict"], None, "malformed"),
        ([{"choices": [{"no": "delta"}]}], None, "malformed"),
        ([{"choices": [{"delta": {"content": 5}}]}], None, "malformed"),
        ([content("  ")], None, "malformed"),
    ],
)
async def test_failures_give_the_fallback_and_count(chunks, error, kind):
    counter = metrics.llm_errors(kind)
    before = counter._value.get()
    *_, reply = await collect(bot(Scripted(chunks, error)), "what is socketsvc")
    assert reply == BotReply(
        f"{UNAVAILABLE} {KB.offer_human}", matched=False, offer_human=True, keeps_draft=False
    )
    assert counter._value.get() == before + 1


async def test_an_answer_to_the_offer_needs_no_model():
    completions = Scripted([content("unused")])
    offered = BotContext("c1", "Visitor", human_offered=True)
    (yes,) = await collect(bot(completions), "yes please", offered)
    (no,) = await collect(bot(completions), "no thanks", offered)
    assert isinstance(yes, BotReply) and yes.handoff and yes.text == KB.handoff_reply
    assert isinstance(no, BotReply) and not no.handoff and no.text == KB.decline_reply
    assert completions.requests == []
