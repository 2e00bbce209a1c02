"""What every namespace shares: turning handler results and errors into acks."""

from __future__ import annotations

import logging
import time
from typing import Any

import socketio

from socketsvc.domain.errors import ServiceError, StorageUnavailable, Unavailable, error_ack
from socketsvc.domain.limits import ConnectionBudget, EventLimits, client_ip
from socketsvc.runtime import metrics
from socketsvc.services import Services

log = logging.getLogger("socketsvc.namespaces")

_pending: set[Any] = set()


class Connection:
    """What a namespace keeps for one open connection, in one small object (10,000 idle
    visitors hold 10,000 of them): the client's address, released from the connection gate when
    the connection closes, and its event budget, created at its first event (a new budget is
    full, as is one left idle, so an idle connection needs none). Namespaces subclass it with
    who the client is.
    """

    __slots__ = ("address", "budget")

    def __init__(self, address: str) -> None:
        self.address = address
        self.budget: ConnectionBudget | None = None


class Namespace(socketio.AsyncNamespace):  # type: ignore[misc]
    """A class-based namespace whose `on_<event>` handlers return the ack's body.

    A handler raises `ServiceError` for an expected refusal (the storage layer raises
    `StorageUnavailable` when the database is unreachable: `unavailable`, logged once per outage
    by the storage layer); anything else is logged and answered with `internal`. The connection
    always stays up.
    """

    lifecycle_events = ("connect", "disconnect")

    def __init__(self, namespace: str, services: Services) -> None:
        super().__init__(namespace)
        self.services = services
        settings = services.settings
        self.limits = EventLimits(settings.message_rate, settings.message_burst)
        self._connections: dict[str, Connection] = {}

    def admit_connection(self, sid: str, environ: dict[str, Any]) -> str:
        """Refuse while draining or over a connection limit; returns the client's address.

        Call first in `on_connect`; `connection_opened` once the connection is accepted, with
        the connection's state (a `Connection`).
        """
        if self.services.lifecycle.draining:
            raise Unavailable("this process is shutting down; reconnect")
        request = environ.get("aiohttp.request")
        peer = request.remote if request is not None else None
        # Every X-Forwarded-For line: a proxy may append its own line after the client's.
        forwarded = (
            ", ".join(request.headers.getall("X-Forwarded-For", ()))
            if request is not None
            else None
        )
        address = client_ip(peer, forwarded, self.services.settings.trusted_proxies)
        self.services.gate.admit(address)
        return address

    def connection_opened(self, sid: str, connection: Connection) -> None:
        """Count an accepted connection against its address and keep its state until it closes."""
        self.services.gate.opened(connection.address)
        self._connections[sid] = connection

    def connection_closed(self, sid: str) -> None:
        connection = self._connections.pop(sid, None)
        if connection is not None:
            self.services.gate.closed(connection.address)

    def connection(self, sid: str) -> Connection | None:
        """The state of an open connection of this namespace (None once it has closed)."""
        return self._connections.get(sid)

    def refuse(self, exc: ServiceError) -> socketio.exceptions.ConnectionRefusedError:
        """The connect_error for a refused connection (`data` = {code, message})."""
        metrics.CONNECT_REFUSALS.labels(namespace=self.namespace, code=exc.code).inc()
        if isinstance(exc, StorageUnavailable):
            self.services.refused("connect")
            log.debug("%s connection refused: the database is unavailable", self.namespace)
        else:
            log.info("%s connection refused: %s %s", self.namespace, exc.code, exc.message)
        return socketio.exceptions.ConnectionRefusedError(exc.message, exc.to_dict())

    def emit_after_connect(self, sid: str, events: list[tuple[str, Any]]) -> None:
        """Send events right after the namespace's CONNECT packet.

        python-socketio sends CONNECT only once the connect handler has returned; events emitted
        inside the handler would reach the client first, which socket.io-client tolerates but
        other clients may not. The task starts after CONNECT is queued.
        """

        async def send() -> None:
            for event, data in events:
                await self.emit(event, data, to=sid)

        task = self.server.start_background_task(send)
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in self.lifecycle_events:
            return await super().trigger_event(event, *args)
        sid = args[0] if args else None
        handler = getattr(self, f"on_{event}", None)
        started = time.perf_counter()
        with self.services.lifecycle.handling():
            outcome, reply = await self._handle(event, handler, sid, args)
        # Arbitrary client event names must not create label values: they count as `other`.
        label = event if handler is not None else "other"
        metrics.event_counter(self.namespace, label, outcome).inc()
        metrics.handler_latency(self.namespace, label).observe(time.perf_counter() - started)
        return reply

    async def _handle(
        self, event: str, handler: Any, sid: Any, args: tuple[Any, ...]
    ) -> tuple[str, dict[str, Any]]:
        """Run one handler; returns (outcome label, ack)."""
        if self.services.lifecycle.draining:
            unavailable = Unavailable("this process is shutting down; retry after reconnecting")
            return "unavailable", {"ok": False, "error": unavailable.to_dict()}
        connection = self._connections.get(sid) if isinstance(sid, str) else None
        if connection is not None:
            budget = connection.budget
            if budget is None:
                budget = connection.budget = ConnectionBudget(self.limits)
            try:
                budget.admit(event if handler is not None else "other")
            except ServiceError as exc:
                if budget.abusive:
                    log.warning("disconnecting %s on %s: sustained flooding", sid, self.namespace)
                    metrics.ABUSE_DISCONNECTS.labels(namespace=self.namespace).inc()
                    self.server.start_background_task(self.disconnect, sid)
                return exc.code, {"ok": False, "error": exc.to_dict()}
        if handler is None:
            outcome, reply = "not_found", error_ack("not_found", f"unknown event {event!r}")
            log.info("unknown event %r on %s from %s", event, self.namespace, sid)
        else:
            try:
                body = await handler(*args)
                outcome, reply = "ok", {"ok": True, **(body or {})}
            except StorageUnavailable as exc:
                outcome, reply = exc.code, {"ok": False, "error": exc.to_dict()}
                self.services.refused("event")
                log.debug("%s %s refused: the database is unavailable", self.namespace, event)
            except ServiceError as exc:
                outcome, reply = exc.code, {"ok": False, "error": exc.to_dict()}
                log.info("%s %s refused: %s %s", self.namespace, event, exc.code, exc.message)
            except Exception:
                outcome, reply = "internal", error_ack("internal", "internal error")
                log.exception("%s %s failed", self.namespace, event)
        return outcome, reply
