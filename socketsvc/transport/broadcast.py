"""`Broadcaster` (the domain's port, `domain.ports`) over python-socketio rooms."""

from __future__ import annotations

import logging
from typing import Any

import socketio

from socketsvc.domain.ports import Broadcaster
from socketsvc.transport import rooms
from socketsvc.transport.managers import LeanManager, Target

log = logging.getLogger(__name__)


class SocketIOBroadcaster:
    """Publishes through python-socketio rooms (and its Redis manager when there is one)."""

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self.sio = sio

    async def to_conversation(
        self,
        conversation_id: str,
        agent_id: str | None,
        event: str,
        data: dict[str, Any],
        skip: str | None = None,
    ) -> None:
        targets: list[Target] = [(rooms.CHAT, rooms.conversation(conversation_id))]
        if agent_id is not None:
            targets.append((rooms.AGENT, rooms.agent(agent_id)))
        manager = self.sio.manager
        if isinstance(manager, LeanManager):
            # One emit for both rooms: with Redis, one message for the other processes.
            await manager.emit_to_rooms(event, data, targets, skip_sid=skip)
            return
        for namespace, room in targets:
            await self.sio.emit(event, data, room=room, namespace=namespace, skip_sid=skip)

    async def to_agent(self, agent_id: str, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, room=rooms.agent(agent_id), namespace=rooms.AGENT)

    async def to_agents(self, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, room=rooms.AGENTS_ROOM, namespace=rooms.AGENT)

    async def to_worker(self, worker: str, event: str, data: dict[str, Any]) -> None:
        """A bot worker connected to this process (`ports.WorkerChannel`)."""
        await self.sio.emit(event, data, to=worker, namespace=rooms.BOT, ignore_queue=True)

    async def to_local_visitors(self, event: str, data: dict[str, Any]) -> None:
        await self.sio.emit(event, data, namespace=rooms.CHAT, ignore_queue=True)


__all__ = ["Broadcaster", "SocketIOBroadcaster"]
