"""A local OpenAI-compatible chat-completions server for the LLM bot's tests.

No model can run here, so this aiohttp app answers `POST /v1/chat/completions` with
`stream: true` in the real wire format of OpenAI's API (which Ollama, vLLM and llama.cpp's server
copy): `Content-Type: text/event-stream`, one `data: {chat.completion.chunk JSON}` line and a
blank line per chunk (the first delta with `role`, then `content` pieces, or `tool_calls` whose
`function.arguments` arrive in pieces), a last chunk with `finish_reason`, then `data: [DONE]`.
What it answers is scripted per test (`LLMServer.mode`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.serving import serving

ANSWER = ["socketsvc ", "is a ", "real-time ", "support-chat ", "backend ", "for your site."]


@dataclass
class LLMServer:
    """The server's script and what it saw. Modes: `text` (the `pieces`, `delay` apart),
    `handoff` (a `handoff` tool call), `http500`, `malformed` (a chunk that is not JSON),
    `cut` (the stream ends without `[DONE]`)."""

    url: str = ""
    mode: str = "text"
    pieces: list[str] = field(default_factory=lambda: list(ANSWER))
    delay: float = 0.15
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    sent: int = 0
    """Content chunks written so far (all requests)."""
    cut_short: int = 0
    """Responses the client closed before the end."""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-local",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_local",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _app(state: LLMServer) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        state.requests.append(body)
        state.headers.append(dict(request.headers))
        if state.mode == "http500":
            return web.json_response(
                {"error": {"message": "The server had an error", "type": "server_error"}},
                status=500,
            )
        assert body.get("stream") is True
        model = body["model"]
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            await response.write(_chunk(model, {"role": "assistant", "content": ""}))
            if state.mode == "handoff":
                await response.write(
                    _chunk(
                        model,
                        {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "handoff", "arguments": ""},
                                }
                            ]
                        },
                    )
                )
                for part in ('{"reason":', ' "visitor asked"}'):
                    await asyncio.sleep(state.delay)
                    await response.write(
                        _chunk(
                            model, {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
                        )
                    )
                await response.write(_chunk(model, {}, "tool_calls"))
            else:
                for piece in state.pieces:
                    await asyncio.sleep(state.delay)
                    if state.mode == "malformed" and state.sent >= 1:
                        await response.write(b"data: {this is not json\n\n")
                        break
                    await response.write(_chunk(model, {"content": piece}))
                    state.sent += 1
                if state.mode == "cut":
                    return response
                await response.write(_chunk(model, {}, "stop"))
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            state.cut_short += 1
            raise
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


@asynccontextmanager
async def llm_server(**script: Any) -> AsyncIterator[LLMServer]:
    """The server on a free loopback port, with `script` as its `LLMServer` fields."""
    state = LLMServer(**script)
    async with serving(_app(state)) as url:
        state.url = url
        yield state
