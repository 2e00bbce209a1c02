"""A webhook receiver for the webhook bot's tests: a real aiohttp server on an ephemeral port.

It records every request as it came (raw body, headers, when) and answers from a script: a
function of the request's event and how many of that event's requests came before, returning
`(status, JSON body or None, seconds to sleep first, extra headers)`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.serving import serving

Script = Callable[[str, int], "Reply"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    """Sent as JSON; None: an empty body."""
    sleep: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    event: str
    body: bytes
    headers: dict[str, str]
    at: float

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    script: Script
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def of(self, event: str) -> list[Request]:
        return [r for r in self.requests if r.event == event]

    async def wait_for(self, event: str, count: int = 1, timeout: float = 15.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.of(event)) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out waiting for {count} {event}; got {[r.event for r in self.requests]}"
                )
            self.arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), min(left, 0.5))
        return self.of(event)


def _app(state: Receiver) -> web.Application:
    async def hook(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        event = json.loads(body).get("event", "?")
        seen = len(state.of(event))
        state.requests.append(Request(event, body, dict(request.headers), time.monotonic()))
        state.arrived.set()
        reply = state.script(event, seen)
        if reply.sleep:
            await asyncio.sleep(reply.sleep)
        if reply.body is None:
            return web.Response(status=reply.status, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    app = web.Application()
    app.router.add_post("/hook", hook)
    return app


@asynccontextmanager
async def receiver(script: Script) -> AsyncIterator[Receiver]:
    state = Receiver(script)
    async with serving(_app(state)) as url:
        state.url = url + "/hook"
        yield state
