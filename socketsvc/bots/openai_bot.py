"""The LLM bot (`BOT=openai`): streams answers from an OpenAI-compatible chat-completions API.

Each visitor message becomes one `POST {LLM_BASE_URL}/chat/completions` with `stream: true`:
the system prompt (`LLM_SYSTEM_PROMPT`), the knowledge-base entries closest to the question (the
retrieval context, `retrieve`), and the visitor's message. The model may call the `handoff`
function tool to hand the visitor to a human. The HTTP side is a `ChatCompletions` port
(`socketsvc.llm.client` implements it over aiohttp), so this module stays free of I/O.

An endpoint that fails (HTTP error, connection refused, timeout, malformed stream) gives the
fallback: "Sorry, I can't answer right now." and the knowledge base's offer of a human (a "yes"
to it hands off, as with the knowledge-base bot), and counts `socketsvc_llm_errors_total`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from rapidfuzz import fuzz, process
from rapidfuzz.utils import default_process

from socketsvc.runtime import metrics

from .base import BotContext, BotReply
from .kb_bot import KnowledgeBaseBot
from .knowledge import ACCEPT_HUMAN, DECLINE_HUMAN, Intent, KnowledgeBase

log = logging.getLogger(__name__)

HANDOFF_TOOL: Final = "handoff"
UNAVAILABLE: Final = "Sorry, I can't answer right now."
"""The start of the fallback reply (the knowledge base's `offer_human` follows)."""
TOP_K: Final = 3
"""Knowledge-base entries put in the prompt."""
DEFAULT_SYSTEM_PROMPT: Final = (
    "You are a helpful, concise support assistant. Answer only from the knowledge base below; "
    "when it does not cover the question, say so briefly and offer a human agent. When the "
    "visitor asks for a human, call the handoff tool."
)

TOOLS: Final = [
    {
        "type": "function",
        "function": {
            "name": HANDOFF_TOOL,
            "description": "Hand the conversation to a human support agent (the visitor asked "
            "for a person, or the question needs one).",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "Why, in a few words."}},
                "required": [],
            },
        },
    }
]


class CompletionError(Exception):
    """The endpoint failed; `kind` is `http`, `connect`, `timeout` or `malformed`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class ChatCompletions(Protocol):
    """An OpenAI-compatible `/chat/completions` endpoint, streamed."""

    def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The decoded JSON chunks of the response (`data: {...}` lines) up to `data: [DONE]`;
        raises `CompletionError` on any failure, including a stream cut before `[DONE]`.
        Closing the iterator early closes the HTTP response (the generation stops)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class LLMConfig:
    """The LLM_* settings the bot itself uses (the endpoint and key belong to the client)."""

    model: str
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = 512
    top_k: int = TOP_K


def retrieve(kb: KnowledgeBase, question: str, k: int = TOP_K) -> list[Intent]:
    """The `k` knowledge-base entries closest to `question`, best first.

    Each entry scores its best example by `rapidfuzz.fuzz.token_set_ratio` (as the knowledge-base
    bot ranks); entries scoring 0 are left out. One small function so that a better ranking
    (BM25) can replace it.
    """
    query = default_process(question)
    if not query or k <= 0:
        return []
    best: dict[int, float] = {}
    for i, intent in enumerate(kb.intents):
        found = process.extractOne(
            query,
            [default_process(e) for e in intent.examples],
            scorer=fuzz.token_set_ratio,
            processor=None,
        )
        if found is not None and found[1] > 0:
            best[i] = found[1]
    ranked = sorted(best, key=lambda i: (-best[i], i))[:k]
    return [kb.intents[i] for i in ranked]


def build_request(config: LLMConfig, kb: KnowledgeBase, question: str) -> dict[str, Any]:
    """The chat-completions request body for one visitor message."""
    entries = retrieve(kb, question, config.top_k)
    context = "\n\n".join(f"Q: {e.examples[0]}\nA: {e.answer}" for e in entries) or "(none)"
    system = f"{config.system_prompt}\n\nKnowledge base:\n{context}"
    return {
        "model": config.model,
        "stream": True,
        "max_tokens": config.max_tokens,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ],
        "tools": TOOLS,
    }


class OpenAIBot:
    """Streams each answer from the model; implements `StreamingBot` (and `Bot`)."""

    def __init__(
        self, kb_bot: KnowledgeBaseBot, config: LLMConfig, completions: ChatCompletions
    ) -> None:
        self.kb_bot = kb_bot
        self.kb = kb_bot.kb
        self.config = config
        self.completions = completions
        self.name = self.kb.bot_name

    async def greeting(self, ctx: BotContext) -> str:
        """The knowledge base's greeting (no model call for a new conversation)."""
        return self.kb.greeting

    async def reply(self, ctx: BotContext, text: str) -> BotReply:
        """The whole answer at once (what `stream` ends with)."""
        final: BotReply | None = None
        async for item in self.stream(ctx, text):
            if isinstance(item, BotReply):
                final = item
        assert final is not None
        return final

    async def stream(self, ctx: BotContext, text: str) -> AsyncIterator[str | BotReply]:
        """The model's text as it comes, then the reply; see the module doc for failures."""
        if ctx.human_offered:
            answer = self.kb_bot.answer_to_offer(text)
            if answer is not None:
                accepted, score = answer
                if accepted:
                    yield BotReply(self.kb.handoff_reply, True, ACCEPT_HUMAN, score, handoff=True)
                else:
                    yield BotReply(self.kb.decline_reply, True, DECLINE_HUMAN, score)
                return
        request = build_request(self.config, self.kb, text)
        parts: list[str] = []
        tools: dict[int, str] = {}
        try:
            async for chunk in self.completions.stream(request):
                content, calls = _delta(chunk)
                for index, name in calls:
                    tools[index] = tools.get(index, "") + name
                if content:
                    parts.append(content)
                    yield content
            answer_text = "".join(parts).strip()
            handoff = HANDOFF_TOOL in tools.values()
            if not answer_text and not handoff:
                raise CompletionError("malformed", "the model answered no text and no handoff")
        except CompletionError as exc:
            metrics.llm_errors(exc.kind).inc()
            log.warning(
                "LLM endpoint failed (%s); answering with the fallback",
                exc,
                extra={"conversation_id": ctx.conversation_id},
            )
            yield BotReply(
                f"{UNAVAILABLE} {self.kb.offer_human}",
                matched=False,
                offer_human=True,
                keeps_draft=False,
            )
            return
        if handoff:
            yield BotReply(
                answer_text or self.kb.handoff_reply,
                matched=True,
                intent=HANDOFF_TOOL,
                handoff=True,
                keeps_draft=bool(answer_text),
            )
            return
        yield BotReply(answer_text, matched=True)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.completions.close()


def _delta(chunk: object) -> tuple[str, list[tuple[int, str]]]:
    """(text, [(tool call index, function name piece)...]) of one chunk; raises
    `CompletionError("malformed")` for anything that is not a chat.completion.chunk."""
    if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
        raise CompletionError("malformed", f"not a completion chunk: {str(chunk)[:200]}")
    choices = chunk["choices"]
    if not choices:  # e.g. the usage chunk at the end
        return "", []
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    if not isinstance(delta, dict):
        raise CompletionError("malformed", f"choices[0] has no delta: {str(choices[0])[:200]}")
    content = delta.get("content") or ""
    if not isinstance(content, str):
        raise CompletionError("malformed", "delta.content is not a string")
    calls: list[tuple[int, str]] = []
    for call in delta.get("tool_calls") or []:
        if not isinstance(call, dict):
            raise CompletionError("malformed", "a tool call is not an object")
        function = call.get("function") or {}
        name = function.get("name") if isinstance(function, dict) else None
        index = call.get("index", 0)
        calls.append(
            (index if isinstance(index, int) else 0, name if isinstance(name, str) else "")
        )
    return content, calls
