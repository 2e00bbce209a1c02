"""A bot that repeats the visitor: handy for tests and benchmarks."""

from __future__ import annotations

import asyncio

from .base import BotContext, BotReply


class EchoBot:
    """Replies `"You said: " + text` to everything; implements the `Bot` protocol."""

    name = "Echo"

    def __init__(self, *, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 seconds, got {delay}")
        self.delay = delay

    async def greeting(self, ctx: BotContext) -> str:
        """A fixed greeting."""
        return "Echo bot here: I repeat what you say."

    async def reply(self, ctx: BotContext, text: str) -> BotReply:
        """Echo `text` after the optional delay."""
        if self.delay:
            await asyncio.sleep(self.delay)
        return BotReply(text=f"You said: {text}", matched=True)

    async def close(self) -> None:
        """Nothing to release."""
