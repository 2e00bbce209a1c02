"""A bot that never answers, for benchmarks: ``BOT=bench_bots:noop`` with ``PYTHONPATH=bench``.

socketsvc's bot runner still runs for each visitor message in the `bot` state (a task that asks
this bot and, as the bot answers at once with nothing, pushes no `typing`), so a benchmark
measures the visitor's own message rather than twice the work.
"""

from __future__ import annotations

from typing import Any


class NoopBot:
    name = "Bench"

    async def greeting(self, ctx: Any) -> str:
        return "Benchmark bot: I stay silent."

    async def reply(self, ctx: Any, text: str) -> None:
        return None

    async def close(self) -> None:
        return None


def noop(kb_path: str | None = None, delay: float = 0.0) -> NoopBot:
    return NoopBot()
