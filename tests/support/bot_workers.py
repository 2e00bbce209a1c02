"""Node bot workers (docs/examples/bot-worker.mjs) and visitors (tests/e2e/bot_visitors.mjs)
for the `/bot` tests, and the count of the bot's replies stored per conversation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from socketsvc.storage.store import Store
from socketsvc.storage.tables import messages

ROOT = Path(__file__).resolve().parents[2]
WORKER = "docs/examples/bot-worker.mjs"
VISITORS = "tests/e2e/bot_visitors.mjs"
BOT = "helper"
KEY = "helper-key-0123456789"
BOT_ENV = {"BOT": f"workers:{BOT}", "BOT_KEYS": f"{BOT}:{KEY}"}


class NodeWorker:
    """`node docs/examples/bot-worker.mjs` against `url`, its output lines kept."""

    def __init__(self, url: str, delay_ms: int = 0) -> None:
        self.url = url
        self.delay_ms = delay_ms
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 15.0) -> None:
        env = {
            **os.environ,
            "SOCKETSVC_URL": self.url,
            "BOT_NAME": BOT,
            "BOT_KEY": KEY,
            "BOT_REPLY_DELAY_MS": str(self.delay_ms),
        }
        self.proc = await asyncio.create_subprocess_exec(
            "node",
            WORKER,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait(lambda: any(line.startswith("ready") for line in self.lines), timeout)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip())

    def count(self, prefix: str) -> int:
        return sum(1 for line in self.lines if line.startswith(prefix))

    async def wait(self, predicate: Any, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"worker: timed out; output: {self.lines[-10:]}")
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}: {self.lines[-10:]}")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: the worker's connection drops with whatever it was answering."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def close(self) -> None:
        self.kill()
        if self.proc is not None:
            await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader


async def run_visitors(url: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """`count` Node visitors on `url`, one message each; what each saw of the bot's replies."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        VISITORS,
        cwd=ROOT,
        env={**os.environ, "SOCKETSVC_URL": url, "VISITORS": str(count), "BOT_NAME": BOT},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, err.decode()
    result: list[dict[str, Any]] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def stored_replies(database_url: str, conversation_ids: list[str]) -> Counter[str]:
    """How many messages of the bot `helper` are stored in each conversation."""
    store = await Store.open(database_url)
    try:
        query = (
            sa.select(messages.c.conversation_id, sa.func.count())
            .where(messages.c.sender_role == "bot", messages.c.sender_name == BOT)
            .group_by(messages.c.conversation_id)
        )
        async with store.read() as conn:
            rows = (await conn.execute(query)).all()
    finally:
        await store.close()
    found = {row[0]: int(row[1]) for row in rows}
    return Counter({cid: found.get(cid, 0) for cid in conversation_ids})
