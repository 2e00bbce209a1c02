"""The built-in knowledge-base bot: answers the intent whose example explains the visitor's text.

Examples are ranked with BM25 and typos corrected with rapidfuzz (`ranking.Ranker`); the best
example's confidence (0..100: how much of the question it explains) must reach the knowledge
base's `threshold`, calibrated on a labelled set (`evaluation`), or the bot falls back. Ties
are broken by the plain `rapidfuzz.fuzz.ratio`, so an exact example beats one that merely
contains the text.

Replies to a human offer use `fuzz.ratio` instead: the whole reply must resemble a
yes/no phrase, so "ok, how do I scale it?" is answered as a question, not taken as consent.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Final

from rapidfuzz import fuzz, process
from rapidfuzz.utils import default_process

from .base import BotContext, BotReply
from .knowledge import (
    ACCEPT_HUMAN,
    DECLINE_HUMAN,
    HANDOFF,
    Intent,
    KnowledgeBase,
    load_default_knowledge_base,
    load_knowledge_base,
)
from .ranking import Ranker

OFFER_AFTER_FALLBACKS: Final = 2
"""The n-th fallback in a row (and every one after it) offers a human."""
SHORT_REPLY_CHARS: Final = 3
"""Replies this short ("ok", "no", "yes") must match a yes/no phrase exactly."""
OFFER_REPLY_CUTOFF: Final = 72.0
"""Lowest `fuzz.ratio` of a longer reply to a human offer against a yes/no phrase."""


@dataclass(frozen=True)
class Match:
    """The best intent for a text, with the example it matched and its confidence (0..100)."""

    intent: Intent
    example: str
    score: float


class KnowledgeBaseBot:
    """Answers from a `KnowledgeBase`; implements the `Bot` protocol."""

    def __init__(self, kb: KnowledgeBase, *, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        self.kb = kb
        self.name = kb.bot_name
        self.delay = delay
        self._ranker = Ranker(kb.intents)
        self._affirmative = [default_process(p) for p in kb.affirmative]
        self._negative = [default_process(p) for p in kb.negative]

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str] | None = None, *, delay: float = 0.0
    ) -> KnowledgeBaseBot:
        """A bot for the KB file at `path`, or the packaged default KB when `path` is None."""
        kb = load_default_knowledge_base() if path is None else load_knowledge_base(path)
        return cls(kb, delay=delay)

    def best(self, text: str) -> Match | None:
        """The most confident intent for `text` whatever its confidence; None if nothing relates."""
        candidates = self._ranker.rank(text)
        if not candidates:
            return None
        query = default_process(text)
        top = max(
            candidates,
            key=lambda c: (round(c.confidence, 6), fuzz.ratio(query, default_process(c.example))),
        )
        return Match(intent=top.intent, example=top.example, score=round(top.confidence, 1))

    def match(self, text: str) -> Match | None:
        """The most confident intent for `text`, or None if it does not reach the threshold."""
        found = self.best(text)
        return found if found is not None and found.score >= self.kb.threshold else None

    def answer_to_offer(self, text: str) -> tuple[bool, float] | None:
        """(True, score) for a yes, (False, score) for a no, None if `text` is neither."""
        query = default_process(text)
        if query in self._affirmative:
            return True, 100.0
        if query in self._negative:
            return False, 100.0
        if len(query) <= SHORT_REPLY_CHARS:
            return None
        yes = self._best(query, self._affirmative)
        no = self._best(query, self._negative)
        if yes == no:  # nothing matched, or too ambiguous to decide
            return None
        return (True, yes) if yes > no else (False, no)

    def _best(self, query: str, phrases: list[str]) -> float:
        found = process.extractOne(
            query, phrases, scorer=fuzz.ratio, processor=None, score_cutoff=OFFER_REPLY_CUTOFF
        )
        return 0.0 if found is None else found[1]

    async def greeting(self, ctx: BotContext) -> str:
        """The KB's greeting."""
        return self.kb.greeting

    async def reply(self, ctx: BotContext, text: str) -> BotReply:
        """Answer a human offer, else the best intent, else a fallback (see module doc)."""
        if self.delay:
            await asyncio.sleep(self.delay)
        if ctx.human_offered:
            answer = self.answer_to_offer(text)
            if answer is not None:
                accepted, score = answer
                if accepted:
                    return BotReply(
                        text=self.kb.handoff_reply,
                        matched=True,
                        intent=ACCEPT_HUMAN,
                        score=score,
                        handoff=True,
                    )
                return BotReply(
                    text=self.kb.decline_reply, matched=True, intent=DECLINE_HUMAN, score=score
                )
        found = self.match(text)
        if found is not None:
            return BotReply(
                text=found.intent.answer,
                matched=True,
                intent=found.intent.name,
                score=found.score,
                handoff=found.intent.action == HANDOFF,
            )
        if ctx.consecutive_fallbacks + 1 >= OFFER_AFTER_FALLBACKS:
            return BotReply(
                text=f"{self.kb.fallback} {self.kb.offer_human}", matched=False, offer_human=True
            )
        return BotReply(text=self.kb.fallback, matched=False)

    async def close(self) -> None:
        """Nothing to release."""
