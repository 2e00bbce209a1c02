"""`WebhookClient`: the webhook bot's `WebhookTransport` over aiohttp (`POST` to one URL)."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from socketsvc.bots.webhook_bot import MAX_BODY, WebhookError, WebhookResponse


class WebhookClient:
    """POSTs signed bodies to `url`; one session, opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def post(
        self, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> WebhookResponse:
        try:
            async with self._client().post(
                self.url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                data = bytearray()
                async for chunk in response.content.iter_chunked(16 * 1024):
                    data += chunk
                    if len(data) > MAX_BODY:
                        break
                return WebhookResponse(
                    response.status,
                    bytes(data[: MAX_BODY + 1]),
                    response.headers.get("Retry-After"),
                )
        except TimeoutError as exc:
            raise WebhookError("timeout", f"no response within {timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise WebhookError("connect", f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
