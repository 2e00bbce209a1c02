"""A python-socketio client that records every event, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

import socketio


class ChatClient:
    """Connects to one namespace and records `(event, data)` in arrival order."""

    EVENTS = (
        "session",
        "message",
        "message_delta",
        "typing",
        "read",
        "state",
        "queue",
        "assigned",
        "conversation",
        "ready",
        "visitor_message",
    )

    def __init__(self, url: str, namespace: str = "/chat", transports: list[str] | None = None):
        self.url = url
        self.namespace = namespace
        self.transports = transports or ["websocket"]
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.connect_error: Any = None
        self._changed = asyncio.Event()
        for name in self.EVENTS:
            self.sio.on(name, self._recorder(name), namespace=namespace)
        self.sio.on("connect_error", self._on_connect_error, namespace=namespace)

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(data: Any = None) -> None:
            self.events.append((name, data))
            self._changed.set()

        return record

    def _on_connect_error(self, data: Any = None) -> None:
        self.connect_error = data
        self._changed.set()

    async def connect(self, auth: Any = None) -> None:
        await self.sio.connect(
            self.url,
            namespaces=[self.namespace],
            transports=self.transports,
            auth=auth,
            wait_timeout=10,
        )

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()

    async def call(self, event: str, *args: Any, timeout: float = 15.0) -> Any:
        data: Any = args[0] if len(args) == 1 else (args if args else None)
        if len(args) > 1:
            data = tuple(args)
        return await self.sio.call(event, data, namespace=self.namespace, timeout=timeout)

    async def send(self, text: str, client_id: str | None = None) -> dict[str, Any]:
        client_id = client_id or uuid.uuid4().hex
        ack: dict[str, Any] = await self.call("message", {"client_id": client_id, "text": text})
        return ack

    async def barrier(self) -> None:
        """One round trip on this connection: every event the server sent it before this call
        has arrived when it returns (a socket delivers in order). For checking that something
        did *not* happen, instead of sleeping."""
        assert self.namespace == "/chat", "a barrier needs an event every client may call"
        ack = await self.call("sync", {"after_seq": 0, "limit": 1})
        assert ack["ok"] is True, ack

    def of(self, name: str) -> list[Any]:
        return [data for event, data in self.events if event == name]

    def messages(self) -> list[dict[str, Any]]:
        return list(self.of("message"))

    @property
    def session(self) -> dict[str, Any]:
        sessions = self.of("session")
        assert sessions, "no session event received"
        result: dict[str, Any] = sessions[-1]
        return result

    async def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; events: {self.events[-10:]}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))

    async def wait_message(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((m for m in self.messages() if predicate(m)), None)

        found: dict[str, Any] = await self.wait_for(find, timeout, "a matching message")
        return found
