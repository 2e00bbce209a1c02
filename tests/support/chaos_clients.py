"""Resilient chat participants for chaos tests and `bench/chaos.py`, and the audit that checks,
against the database, that nothing they sent was lost or duplicated.

Participants behave as the protocol asks a well-written client to (PROTOCOL.md):
- they reconnect by themselves (python-socketio's reconnection, 0.2 s doubling to 2 s, +-50 %);
- a visitor keeps its `visitor_token` and resumes its conversation; on every (re)connect, and
  whenever a `message` arrives whose seq skips, it calls `sync` from its highest contiguous seq,
  and deduplicates by seq; an agent does the same for each conversation assigned to it;
- each message gets a unique `client_id` and is re-sent with the SAME client_id until acked
  (after ~3 s without an ack, a disconnect, or a retryable error).

Each participant connects from its own loopback address (127.0.0.2, 127.0.0.3, ...) so that
nginx's `hash $remote_addr` spreads them over the processes, and records everything it sent,
had acknowledged and saw (live or through `sync`), with its reconnect times.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import random
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import engineio
import socketio

from socketsvc.domain.tokens import TokenService
from tests.conftest import SECRET

RETRYABLE = frozenset({"unavailable", "rate_limited", "internal"})
"""Error codes after which the same request is tried again."""
ACK_TIMEOUT = 3.0
GIVE_UP_AFTER = 90.0
"""A message still unacked after this long is recorded as rejected ("gave up")."""


def source_address(k: int) -> str:
    """The k-th participant's own address: 127.0.0.2 ... 127.0.0.254, then 127.0.1.2, ..."""
    return f"127.0.{k // 253}.{k % 253 + 2}"


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class _BrowserLikeEngineIO(engineio.AsyncClient):  # type: ignore[misc]
    """python-engineio's client, but an Engine.IO CLOSE packet from the server is handled as
    engine.io-client (JS) handles it: over WebSocket it is ignored and the transport's end (the
    server closes it right after) counts as a transport close, after which the Socket.IO client
    reconnects.

    python-engineio instead answers CLOSE with `disconnect(reason=SERVER_DISCONNECT)`, which
    sets its state to 'disconnecting' before the Socket.IO layer hears of it, so python-socketio
    decides not to reconnect (see test_chaos.py,
    test_plain_python_socketio_client_reconnects_after_sigterm).
    """

    server_closes = 0
    """CLOSE packets received (a class default; counted per client)."""

    async def _receive_packet(self, pkt: engineio.packet.Packet) -> None:
        if pkt.packet_type == engineio.packet.CLOSE:
            self.server_closes += 1
            return
        await super()._receive_packet(pkt)


class _SocketClient(socketio.AsyncClient):  # type: ignore[misc]
    """python-socketio's client, waiting up to 10 s for the namespace CONNECT, and reconnecting
    after the server closes the Engine.IO session (as socket.io-client does) when
    `browser_like` is set.

    Its reconnect loop calls `connect()` with the default `wait_timeout` of 1 s: a process busy
    accepting dozens of reconnections at once may take longer, and the client would then drop a
    connection that was about to succeed and start over. socket.io-client waits 20 s.
    """

    def __init__(self, *args: Any, browser_like: bool = True, **kwargs: Any) -> None:
        self._browser_like = browser_like
        super().__init__(*args, **kwargs)

    def _engineio_client_class(self) -> type[engineio.AsyncClient]:
        return _BrowserLikeEngineIO if self._browser_like else engineio.AsyncClient

    async def connect(self, *args: Any, wait_timeout: float = 10, **kwargs: Any) -> None:
        await super().connect(*args, wait_timeout=wait_timeout, **kwargs)


class ConversationLog:
    """What one participant saw of one conversation, deduplicated by seq."""

    def __init__(self, conversation_id: str) -> None:
        self.id = conversation_id
        self.seen: dict[int, dict[str, Any]] = {}
        self.live: dict[int, float] = {}
        """seq -> when it arrived as a `message` event (monotonic)."""
        self.contiguous = 0
        self.last_seq = 0
        """The highest `last_seq` the service reported (session or sync)."""
        self.conflicts: list[tuple[dict[str, Any], dict[str, Any]]] = []
        """Two different messages with the same seq."""
        self.repeats = 0

    def record(self, message: dict[str, Any], live: bool) -> bool:
        """Remember a message; True when some earlier seq is still missing (sync!)."""
        seq = message["seq"]
        known = self.seen.get(seq)
        if known is None:
            self.seen[seq] = message
        elif known["id"] != message["id"]:
            self.conflicts.append((known, message))
        else:
            self.repeats += 1
        if live and seq not in self.live:
            self.live[seq] = time.monotonic()
        while self.contiguous + 1 in self.seen:
            self.contiguous += 1
        return max(self.seen) > self.contiguous


class _Syncer:
    """Runs `sync` for one conversation log until the participant holds everything to last_seq.

    Requests coalesce: while a sync runs, further requests make it run once more afterwards.
    """

    def __init__(
        self,
        participant: Participant,
        log: ConversationLog,
        payload: Callable[[int], dict[str, Any]],
    ) -> None:
        self.participant = participant
        self.log = log
        self.payload = payload
        self.wanted = False
        self.task: asyncio.Task[None] | None = None
        self.syncs = 0
        self.refused: str | None = None

    def request(self) -> None:
        self.wanted = True
        if self.task is None or self.task.done():
            self.task = self.participant.spawn(self._run())

    async def _run(self) -> None:
        while self.wanted and not self.participant.closed:
            self.wanted = False
            if not await self.once():
                self.wanted = True
                await self.participant.wait_ready(5.0)
                await asyncio.sleep(0.1)

    async def once(self) -> bool:
        """Page through `sync` from the contiguous seq; False if it has to be tried again."""
        while True:
            before = self.log.contiguous
            ack = await self.participant.request("sync", self.payload(before), timeout=5.0)
            if not isinstance(ack, dict):
                return False
            if not ack.get("ok"):
                code = ack.get("error", {}).get("code", "?")
                self.participant.errors[f"sync:{code}"] += 1
                if code in RETRYABLE:
                    return False
                self.refused = code
                return True
            self.syncs += 1
            for message in ack["messages"]:
                self.log.record(message, live=False)
            self.log.last_seq = max(self.log.last_seq, ack["last_seq"])
            if self.log.contiguous >= ack["last_seq"] or self.log.contiguous == before:
                return True

    async def complete(self, timeout: float) -> bool:
        """Sync now until everything up to the last seq is held; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.participant.wait_ready(max(0.1, deadline - time.monotonic()))
            if await self.once():
                return True
            await asyncio.sleep(0.2)
        return False


class Participant:
    """A reconnecting Socket.IO client on one namespace, from its own source address."""

    namespace = "/"

    def __init__(
        self,
        url: str,
        name: str,
        source_ip: str,
        transports: list[str] | None = None,
        interval: tuple[float, float] = (0.5, 1.0),
        browser_like: bool = True,
    ) -> None:
        self.url = url
        self.browser_like = browser_like
        self.name = name
        self.source_ip = source_ip
        self.transports = transports or ["websocket"]
        self.interval = interval
        self.sio: _SocketClient | None = None
        self.http: aiohttp.ClientSession | None = None
        self.ready = asyncio.Event()
        self.gone = asyncio.Event()
        self.closed = False
        self.disconnected_at: float | None = None
        self.reconnect_times: list[float] = []
        self.disconnects = 0
        self.connect_errors: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.attempted: list[str] = []
        self.acked: dict[str, dict[str, Any]] = {}
        self.rejected: dict[str, str] = {}
        self.resends = 0
        self._counter = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_sending = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    # connection -------------------------------------------------------------------------

    def auth(self) -> dict[str, Any] | None:
        """The handshake's auth object, asked again at every (re)connection."""
        return None

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {}

    async def start(self, timeout: float = 20.0) -> None:
        """Connect (retrying) and wait for the first session/snapshot."""
        connector = aiohttp.TCPConnector(local_addr=(self.source_ip, 0))
        self.http = aiohttp.ClientSession(connector=connector)
        self.sio = _SocketClient(
            reconnection=True,
            reconnection_delay=0.2,
            reconnection_delay_max=2,
            randomization_factor=0.5,
            http_session=self.http,
            browser_like=self.browser_like,
        )
        self.sio.on("disconnect", self._on_disconnect, namespace=self.namespace)
        self.sio.on("connect_error", self._on_connect_error, namespace=self.namespace)
        for event, handler in self.handlers().items():
            self.sio.on(event, handler, namespace=self.namespace)
        await self.sio.connect(
            self.url,
            namespaces=[self.namespace],
            transports=self.transports,
            auth=self.auth,
            retry=True,
        )
        if not await self.wait_ready(timeout):
            raise TimeoutError(f"{self.name}: no session after {timeout} s")

    async def wait_ready(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        return self.ready.is_set()

    def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnects += 1
        self.ready.clear()
        self.gone.set()
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()

    def _on_connect_error(self, data: Any = None) -> None:
        code = data.get("code", "?") if isinstance(data, dict) else str(data)[:40]
        self.connect_errors[code] += 1

    def became_ready(self) -> None:
        """Call when the session (visitor) or the snapshots (agent) arrived."""
        if self.disconnected_at is not None:
            self.reconnect_times.append(time.monotonic() - self.disconnected_at)
            self.disconnected_at = None
        self.gone = asyncio.Event()
        self.ready.set()

    @property
    def connected(self) -> bool:
        return self.ready.is_set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        self.closed = True
        await self.stop_traffic(timeout=0.1)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.sio is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.sio.shutdown(), 5)
        if self.http is not None:
            await self.http.close()

    # requests ---------------------------------------------------------------------------

    async def request(self, event: str, data: dict[str, Any], timeout: float = ACK_TIMEOUT) -> Any:
        """Emit with an ack; the ack, or None on a timeout or a disconnect."""
        if self.sio is None or not self.ready.is_set():
            return None
        gone = self.gone
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(*args: Any) -> None:
            if not acked.done():
                acked.set_result(args[0] if args else None)

        try:
            await self.sio.emit(event, data, namespace=self.namespace, callback=on_ack)
        except socketio.exceptions.SocketIOError:
            return None
        dropped = asyncio.ensure_future(gone.wait())
        try:
            await asyncio.wait({acked, dropped}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            dropped.cancel()
        if acked.done():
            return acked.result()
        acked.cancel()
        return None

    async def deliver(self, event: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Send a message until it is acknowledged, always with the same client_id."""
        client_id = payload["client_id"]
        self.attempted.append(client_id)
        deadline = time.monotonic() + GIVE_UP_AFTER
        tries = 0
        while time.monotonic() < deadline and not self.closed:
            if not await self.wait_ready(max(0.1, deadline - time.monotonic())):
                continue  # dropped again at once, or the deadline passed
            tries += 1
            if tries > 1:
                self.resends += 1
            ack = await self.request(event, payload)
            if not isinstance(ack, dict):
                await asyncio.sleep(0.05)
                continue
            if ack.get("ok"):
                message: dict[str, Any] = ack["message"]
                self.acked[client_id] = message
                return message
            code = ack.get("error", {}).get("code", "?")
            self.errors[f"{event}:{code}"] += 1
            if code not in RETRYABLE:
                self.rejected[client_id] = code
                return None
            await asyncio.sleep(random.uniform(0.2, 0.5))
        self.rejected.setdefault(client_id, "gave up")
        return None

    def next_client_id(self) -> str:
        return f"{self.name}-{next(self._counter)}"

    # traffic ----------------------------------------------------------------------------

    async def send_one(self) -> dict[str, Any] | None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def resync(self, timeout: float = 30.0) -> bool:  # pragma: no cover - abstract
        """Sync every conversation held up to its last seq; False on timeout."""
        raise NotImplementedError

    def start_traffic(self) -> None:
        """Send a message every `interval` seconds (uniformly random) until stopped."""
        self._stop_sending.clear()
        if self._sender is None or self._sender.done():
            self._sender = self.spawn(self._traffic())

    async def _traffic(self) -> None:
        await asyncio.sleep(random.uniform(0, self.interval[1]))
        while not self._stop_sending.is_set():
            await self.send_one()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_sending.wait(), random.uniform(*self.interval))

    async def stop_traffic(self, timeout: float = GIVE_UP_AFTER) -> None:
        """Stop sending; the message being sent is still retried until acked."""
        self._stop_sending.set()
        if self._sender is not None and not self._sender.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._sender), timeout)


class Visitor(Participant):
    """A website visitor: resumes with its token, syncs its conversation, sends messages."""

    namespace = "/chat"

    def __init__(self, url: str, name: str, source_ip: str, **kwargs: Any) -> None:
        super().__init__(url, name, source_ip, **kwargs)
        self.token: str | None = None
        self.visitor_id: str | None = None
        self.conversation_id: str | None = None
        self.log: ConversationLog | None = None
        self.syncer: _Syncer | None = None
        self.state: str | None = None
        self.sessions = 0
        self.anomalies: list[str] = []

    def auth(self) -> dict[str, Any] | None:
        return {"visitor_token": self.token} if self.token else None

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {"session": self._on_session, "message": self._on_message, "state": self._on_state}

    def _on_session(self, data: dict[str, Any]) -> None:
        self.sessions += 1
        self.token = data["visitor_token"]
        if self.conversation_id is None:
            self.visitor_id = data["visitor_id"]
            self.conversation_id = data["conversation_id"]
            self.log = ConversationLog(data["conversation_id"])
            self.syncer = _Syncer(self, self.log, self._sync_payload)
        elif data["conversation_id"] != self.conversation_id:
            self.anomalies.append(f"resumed into another conversation: {data}")
        assert self.log is not None and self.syncer is not None
        self.state = data["state"]
        self.log.last_seq = max(self.log.last_seq, data["last_seq"])
        self.became_ready()
        self.syncer.request()

    def _on_message(self, message: dict[str, Any]) -> None:
        if self.log is None or message["conversation_id"] != self.conversation_id:
            self.anomalies.append(f"message of another conversation: {message}")
            return
        if self.log.record(message, live=True) and self.syncer is not None:
            self.syncer.request()

    def _on_state(self, data: dict[str, Any]) -> None:
        self.state = data["state"]

    @staticmethod
    def _sync_payload(after: int) -> dict[str, Any]:
        return {"after_seq": after, "limit": 500}

    async def handoff(self, timeout: float = 15.0) -> str:
        """Ask for a human; the state it answers with."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.wait_ready(max(0.1, deadline - time.monotonic()))
            ack = await self.request("handoff", {"reason": "chaos test"})
            if isinstance(ack, dict) and ack.get("ok"):
                state: str = ack["state"]
                return state
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name}: handoff not acknowledged")

    async def send_one(self) -> dict[str, Any] | None:
        client_id = self.next_client_id()
        return await self.deliver(
            "message", {"client_id": client_id, "text": f"{self.name} says {client_id}"}
        )

    async def resync(self, timeout: float = 30.0) -> bool:
        return self.syncer is not None and await self.syncer.complete(timeout)

    def logs(self) -> dict[str, ConversationLog]:
        return {} if self.log is None else {self.log.id: self.log}


class Agent(Participant):
    """A human agent: accepts queued conversations, syncs each of its own, answers them."""

    namespace = "/agent"

    def __init__(
        self,
        url: str,
        agent_id: str,
        display_name: str,
        source_ip: str,
        secret: str = SECRET,
        capacity: int | None = None,
        auto_accept: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(url, agent_id, source_ip, **kwargs)
        self.agent_id = agent_id
        self.token = TokenService(secret, 3600).mint_agent(agent_id, display_name)
        self.capacity = capacity
        self.auto_accept = auto_accept
        self.conversations: dict[str, ConversationLog] = {}
        self.syncers: dict[str, _Syncer] = {}
        self.lost_assignments: set[str] = set()
        self.accept_conflicts = 0
        self.snapshots = 0
        self._accepting: set[str] = set()
        self._turn = 0

    def auth(self) -> dict[str, Any] | None:
        return {"token": self.token}

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "queue": self._on_queue,
            "assigned": self._on_assigned,
            "conversation": self._on_conversation,
            "message": self._on_message,
        }

    def _log(self, conversation_id: str) -> ConversationLog:
        log = self.conversations.get(conversation_id)
        if log is None:
            log = self.conversations[conversation_id] = ConversationLog(conversation_id)
            self.syncers[conversation_id] = _Syncer(
                self, log, functools.partial(self._sync_payload, conversation_id)
            )
        return log

    @staticmethod
    def _sync_payload(conversation_id: str, after: int) -> dict[str, Any]:
        return {"conversation_id": conversation_id, "after_seq": after, "limit": 500}

    def _on_queue(self, data: dict[str, Any]) -> None:
        for summary in data["conversations"]:
            self._maybe_accept(summary)

    def _on_assigned(self, data: dict[str, Any]) -> None:
        self.snapshots += 1
        mine = {summary["conversation_id"] for summary in data["conversations"]}
        for conversation_id in mine:
            self._log(conversation_id)
        self.lost_assignments |= set(self.conversations) - mine
        self.became_ready()
        for conversation_id in mine:
            self.syncers[conversation_id].request()

    def _on_conversation(self, summary: dict[str, Any]) -> None:
        conversation_id = summary["conversation_id"]
        owner = (summary.get("agent") or {}).get("id")
        if conversation_id in self.conversations and (
            summary["state"] != "assigned" or owner != self.agent_id
        ):
            self.lost_assignments.add(conversation_id)
        if summary["state"] == "queued":
            self._maybe_accept(summary)

    def _on_message(self, message: dict[str, Any]) -> None:
        conversation_id = message["conversation_id"]
        if self._log(conversation_id).record(message, live=True):
            self.syncers[conversation_id].request()

    def _maybe_accept(self, summary: dict[str, Any]) -> None:
        conversation_id = summary["conversation_id"]
        if not self.auto_accept or conversation_id in self.conversations:
            return
        if conversation_id in self._accepting:
            return
        if self.capacity is not None and len(self.conversations) + len(self._accepting) >= (
            self.capacity
        ):
            return
        self._accepting.add(conversation_id)

        async def accept() -> None:
            try:
                await self.accept(conversation_id)
            finally:
                self._accepting.discard(conversation_id)

        self.spawn(accept())

    async def accept(self, conversation_id: str, timeout: float = 15.0) -> bool:
        """Claim a queued conversation; False when another agent has it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.wait_ready(max(0.1, deadline - time.monotonic()))
            ack = await self.request("accept", {"conversation_id": conversation_id}, timeout=5.0)
            if not isinstance(ack, dict):
                continue
            if ack.get("ok"):
                log = self._log(conversation_id)
                self.lost_assignments.discard(conversation_id)
                for message in ack["messages"]:
                    log.record(message, live=False)
                return True
            code = ack.get("error", {}).get("code", "?")
            if code == "conflict":
                self.accept_conflicts += 1
                return False
            self.errors[f"accept:{code}"] += 1
            if code not in RETRYABLE:
                return False
            await asyncio.sleep(0.2)
        return False

    def assigned(self) -> list[str]:
        return [c for c in self.conversations if c not in self.lost_assignments]

    async def send_one(self) -> dict[str, Any] | None:
        mine = sorted(self.assigned())
        if not mine:
            return None
        conversation_id = mine[self._turn % len(mine)]
        self._turn += 1
        client_id = self.next_client_id()
        return await self.deliver(
            "message",
            {
                "conversation_id": conversation_id,
                "client_id": client_id,
                "text": f"{self.name} answers {client_id}",
            },
        )

    async def resync(self, timeout: float = 30.0) -> bool:
        results = await asyncio.gather(
            *(self.syncers[c].complete(timeout) for c in self.assigned())
        )
        return all(results)

    def logs(self) -> dict[str, ConversationLog]:
        return dict(self.conversations)


class Crowd:
    """`visitors` visitors, each handed to one of `agents` agents, chatting both ways."""

    def __init__(
        self,
        url: str,
        visitors: int = 50,
        agents: int = 5,
        interval: tuple[float, float] = (0.5, 1.0),
        agent_interval: tuple[float, float] | None = None,
        polling_every: int = 5,
        tag: str | None = None,
        secret: str = SECRET,
    ) -> None:
        tag = tag or uuid.uuid4().hex[:6]
        capacity = math.ceil(visitors / agents) + 2
        self.agents = [
            Agent(
                url,
                f"agent-{tag}-{i}",
                f"Agent {i}",
                source_address(i),
                secret=secret,
                capacity=capacity,
                interval=agent_interval or interval,
            )
            for i in range(agents)
        ]
        self.visitors = [
            Visitor(
                url,
                f"visitor-{tag}-{j}",
                source_address(agents + j),
                # every n-th visitor starts with long-polling and upgrades, as browsers do
                transports=(
                    ["polling", "websocket"] if polling_every and j % polling_every == 0 else None
                ),
                interval=interval,
            )
            for j in range(visitors)
        ]

    @property
    def participants(self) -> list[Participant]:
        return [*self.agents, *self.visitors]

    async def start(self, timeout: float = 60.0) -> float:
        """Connect everyone, hand every visitor off and have agents accept them all.

        Returns the seconds it took. Agents stop auto-accepting afterwards.
        """
        started = time.monotonic()
        gate = asyncio.Semaphore(20)

        async def start(p: Participant) -> None:
            async with gate:
                await p.start()

        await asyncio.gather(*(start(a) for a in self.agents))
        await asyncio.gather(*(start(v) for v in self.visitors))
        await asyncio.gather(*(v.handoff() for v in self.visitors))
        await self._assign_all(started + timeout)
        for agent in self.agents:
            agent.auto_accept = False
        return time.monotonic() - started

    async def _assign_all(self, deadline: float) -> None:
        helped_at = time.monotonic() + 3.0
        while True:
            missing = [c for c in self.visitor_conversations() if self.agent_of(c) is None]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(missing)} conversations never accepted")
            if time.monotonic() > helped_at:
                # auto-accept missed some (a queue event dropped?): accept them explicitly
                for conversation_id in missing:
                    agent = min(self.agents, key=lambda a: len(a.conversations))
                    await agent.accept(conversation_id)
            await asyncio.sleep(0.3)

    def visitor_conversations(self) -> list[str]:
        return [v.conversation_id for v in self.visitors if v.conversation_id]

    def agent_of(self, conversation_id: str) -> Agent | None:
        for agent in self.agents:
            if conversation_id in agent.conversations:
                return agent
        return None

    def start_traffic(self) -> None:
        for p in self.participants:
            p.start_traffic()

    async def stop_traffic(self) -> None:
        await asyncio.gather(*(p.stop_traffic() for p in self.participants))

    async def resync(self, timeout: float = 30.0) -> bool:
        """Everyone syncs every conversation it holds up to the last seq."""
        results = await asyncio.gather(*(p.resync(timeout) for p in self.participants))
        return all(results)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.participants), return_exceptions=True)

    def reconnect_times(self) -> list[float]:
        return [t for p in self.participants for t in p.reconnect_times]

    def disconnected(self) -> int:
        return sum(1 for p in self.participants if p.disconnects)

    def all_connected(self) -> bool:
        return all(p.connected for p in self.participants)

    async def wait_connected(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.all_connected():
                return True
            await asyncio.sleep(0.1)
        return self.all_connected()

    def live_since(self, moment: float) -> tuple[int, int]:
        """(conversations whose agent got a visitor message live after `moment`, all)."""
        live = 0
        for visitor in self.visitors:
            agent = self.agent_of(visitor.conversation_id or "")
            if agent is None:
                continue
            log = agent.conversations[visitor.conversation_id or ""]
            if any(
                t > moment and log.seen[seq]["sender"]["role"] == "visitor"
                for seq, t in log.live.items()
            ):
                live += 1
        return live, len(self.visitors)

    def counters(self) -> dict[str, Any]:
        """Client-side figures: resends, errors, connect errors, disconnects."""
        errors: Counter[str] = Counter()
        connect_errors: Counter[str] = Counter()
        for p in self.participants:
            errors.update(p.errors)
            connect_errors.update(p.connect_errors)
        return {
            "resends": sum(p.resends for p in self.participants),
            "server_closes": sum(
                getattr(p.sio.eio, "server_closes", 0) for p in self.participants if p.sio
            ),
            "disconnects": sum(p.disconnects for p in self.participants),
            "errors": dict(errors),
            "connect_errors": dict(connect_errors),
        }


@dataclass
class Audit:
    """What was sent, acknowledged, stored and delivered, checked against the database."""

    sent: int = 0
    acked: int = 0
    stored: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    messages: int = 0
    conversations: int = 0
    problems: dict[str, list[Any]] = field(default_factory=dict)

    def problem(self, kind: str, detail: Any) -> None:
        self.problems.setdefault(kind, []).append(detail)

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0

    def line(self) -> str:
        return (
            f"sent={self.sent} acked={self.acked} stored={self.stored} "
            f"delivered={self.delivered}/{self.messages} lost={self.lost} "
            f"duplicated={self.duplicated} conversations={self.conversations}"
        )

    def summary(self, limit: int = 3) -> str:
        return "; ".join(
            f"{kind}: {len(items)} e.g. {items[:limit]}" for kind, items in self.problems.items()
        )


def _sqlite_rows(path: str, ids: list[str]) -> tuple[list[Any], list[Any]]:
    """The audit's two queries on a SQLite file (rows indexable by column name)."""
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    try:
        marks = ", ".join("?" for _ in ids) or "NULL"
        rows = connection.execute(
            "SELECT conversation_id, seq, id, client_id, sender_role, sender_id FROM messages"
            f" WHERE conversation_id IN ({marks})",
            ids,
        ).fetchall()
        conversations = connection.execute(
            f"SELECT id, last_seq, state, agent_id FROM conversations WHERE id IN ({marks})", ids
        ).fetchall()
    finally:
        connection.close()
    return rows, conversations


async def audit(database_url: str, crowd: Crowd) -> Audit:
    """Compare what the crowd sent, had acked and saw with what the database (PostgreSQL, or a
    `sqlite:///` file) holds.

    - sent: unique client_ids attempted; acked: of those, acknowledged; stored: of those, in
      the database;
    - delivered: stored messages of the crowd's conversations that the visitor AND the agent
      saw (live or by sync), out of all stored messages of those conversations;
    - lost: acked but not stored, plus stored but not seen by one of the participants, plus
      acks that disagree with the stored row;
    - duplicated: a client_id stored more than once, a seq stored twice, or two different
      messages a participant received with one seq.
    """
    result = Audit()
    ids = crowd.visitor_conversations()
    if database_url.startswith("sqlite:///"):
        rows, conversations = _sqlite_rows(database_url.removeprefix("sqlite:///"), ids)
    else:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT conversation_id, seq, id, client_id, sender_role, sender_id FROM messages"
                " WHERE conversation_id = ANY($1::varchar[])",
                ids,
            )
            conversations = await connection.fetch(
                "SELECT id, last_seq, state, agent_id FROM conversations"
                " WHERE id = ANY($1::varchar[])",
                ids,
            )
        finally:
            await connection.close()

    attempted: set[str] = set()
    acked: dict[str, dict[str, Any]] = {}
    rejected: dict[str, str] = {}
    for p in crowd.participants:
        attempted.update(p.attempted)
        acked.update(p.acked)
        rejected.update(p.rejected)
    by_client_id: dict[str, list[Any]] = {}
    by_conversation: dict[str, list[Any]] = {}
    for row in rows:
        by_conversation.setdefault(row["conversation_id"], []).append(row)
        if row["client_id"] is not None:
            by_client_id.setdefault(row["client_id"], []).append(row)

    result.sent = len(attempted)
    result.acked = len(acked)
    result.stored = sum(1 for c in attempted if c in by_client_id)
    result.messages = len(rows)
    result.conversations = len(ids)
    for client_id, code in rejected.items():
        result.problem("never acked", (client_id, code))
    for client_id, message in acked.items():
        stored = by_client_id.get(client_id)
        if not stored:
            result.lost += 1
            result.problem("acked but not stored", message)
        elif (stored[0]["id"], stored[0]["seq"]) != (message["id"], message["seq"]):
            result.lost += 1
            result.problem("ack differs from the stored row", (message, dict(stored[0])))
    for client_id, stored in by_client_id.items():
        if len(stored) > 1:
            result.duplicated += len(stored) - 1
            result.problem("client_id stored twice", [dict(r) for r in stored])
        if client_id not in attempted:
            result.problem("stored but never sent", dict(stored[0]))

    agents = {a.agent_id: a for a in crowd.agents}
    last_seqs = {row["id"]: row for row in conversations}
    for visitor in crowd.visitors:
        conversation_id = visitor.conversation_id
        if conversation_id is None:
            result.problem("visitor without a conversation", visitor.name)
            continue
        stored_rows = by_conversation.get(conversation_id, [])
        seqs = Counter(row["seq"] for row in stored_rows)
        result.duplicated += sum(n - 1 for n in seqs.values())
        for seq, n in seqs.items():
            if n > 1:
                result.problem("seq stored twice", (conversation_id, seq, n))
        conversation = last_seqs.get(conversation_id)
        last_seq = conversation["last_seq"] if conversation else 0
        if set(seqs) != set(range(1, last_seq + 1)):
            missing = sorted(set(range(1, last_seq + 1)) - set(seqs))
            extra = sorted(set(seqs) - set(range(1, last_seq + 1)))
            result.problem("seqs not 1..last_seq", (conversation_id, missing[:5], extra[:5]))
        agent_id = conversation["agent_id"] if conversation else None
        agent = agents.get(agent_id or "")
        logs: list[tuple[str, ConversationLog | None]] = [("visitor", visitor.log)]
        if conversation is None or conversation["state"] != "assigned" or agent is None:
            result.problem(
                "conversation not assigned to a crowd agent at the end",
                (conversation_id, conversation and conversation["state"], agent_id),
            )
        else:
            logs.append(("agent", agent.conversations.get(conversation_id)))
        for role, log in logs:
            if log is None:
                continue
            result.duplicated += len(log.conflicts)
            for known, other in log.conflicts:
                result.problem(f"{role} got two messages with one seq", (known, other))
            phantom = set(log.seen) - set(seqs)
            if phantom:
                result.problem(f"{role} saw seqs that are not stored", (conversation_id, phantom))
        for row in stored_rows:
            missed = [
                role
                for role, log in logs
                if log is None
                or row["seq"] not in log.seen
                or log.seen[row["seq"]]["id"] != row["id"]
            ]
            if missed or len(logs) < 2:
                result.lost += 1
                result.problem("stored but not seen", (conversation_id, row["seq"], missed))
            else:
                result.delivered += 1
    for visitor in crowd.visitors:
        for anomaly in visitor.anomalies:
            result.problem("visitor anomaly", anomaly)
    return result
