"""`OpenAIChatClient`: the `ChatCompletions` port over aiohttp, for any OpenAI-compatible server
(OpenAI, Ollama, vLLM, llama.cpp's server): `POST {base_url}/chat/completions` with the request
as JSON, the response read as server-sent events (`data: {chunk}` ... `data: [DONE]`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from socketsvc.bots.openai_bot import CompletionError
from socketsvc.llm import sse

CONNECT_TIMEOUT = 5.0
"""Seconds to open the connection (within the whole request's timeout)."""
DONE = "[DONE]"


class OpenAIChatClient:
    """Streams chat completions; each request must finish within `timeout` seconds."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key
        self.timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=min(timeout, CONNECT_TIMEOUT)
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The JSON chunks up to `[DONE]` (see `ChatCompletions.stream`)."""
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            async with self._client().post(
                self.url, json=dict(request), headers=headers, timeout=self.timeout
            ) as response:
                try:
                    if response.status != 200:
                        body = (await response.text(errors="replace"))[:300]
                        raise CompletionError("http", f"HTTP {response.status}: {body}")
                    done = False
                    async for event in sse.events(response.content.iter_any()):
                        if event.data.strip() == DONE:
                            done = True
                            break
                        yield _chunk(event.data)
                    if not done:
                        raise CompletionError("malformed", "the stream ended before data: [DONE]")
                finally:
                    response.close()  # stops the generation when the reader leaves early
        except CompletionError:
            raise
        except TimeoutError as exc:
            raise CompletionError(
                "timeout", f"no complete answer within {self.timeout.total} s"
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise CompletionError("malformed", f"the response broke off: {exc}") from exc
        except aiohttp.ClientError as exc:
            raise CompletionError("connect", f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError:
        raise CompletionError("malformed", f"not JSON: {data[:200]!r}") from None
    if not isinstance(chunk, dict):
        raise CompletionError("malformed", f"not a JSON object: {data[:200]!r}")
    if "error" in chunk:  # OpenAI reports a failure met mid-stream this way
        raise CompletionError("http", f"error in the stream: {str(chunk['error'])[:300]}")
    return chunk
