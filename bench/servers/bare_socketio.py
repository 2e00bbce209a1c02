"""The floor of this stack: a bare python-socketio server on aiohttp with socketsvc's settings.

`/chat` sends a `session` event after connecting (like socketsvc) and answers `message` with
``{"ok": True, "message": {...}}``: the payload echoed as a Message with a per-connection `seq`;
`sync` answers with no messages (nothing is stored).
With ``--relay``, each message is also pushed as a `message` event to the visitor's own
connection and to the room of the agent named in the visitor's handshake
(``auth: {"agent_id": ID}``), in `/agent` (agents connect with ``auth: {"agent_id": ID}``):
the same fan-out as socketsvc for an assigned conversation, without the storage.

    python bench/servers/bare_socketio.py [--host 127.0.0.1] [--port 0] [--relay]

Prints ``listening on http://HOST:PORT`` on stderr once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import socketio
from aiohttp import web

MAX_HTTP_BUFFER = 64 * 1024


def build(relay: bool, ping_interval: float, ping_timeout: float) -> web.Application:
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        cors_allowed_origins=None,
        async_handlers=False,  # like socketsvc: one event at a time per connection
        max_http_buffer_size=MAX_HTTP_BUFFER,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        logger=False,
        engineio_logger=False,
    )
    sessions: dict[str, dict[str, Any]] = {}

    @sio.on("connect", namespace="/chat")
    async def chat_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        agent = auth.get("agent_id") if isinstance(auth, dict) else None
        session = {
            "visitor_id": uuid.uuid4().hex,
            "conversation_id": uuid.uuid4().hex,
            "seq": 0,
            "agent_id": agent,
        }
        sessions[sid] = session
        payload = {
            "visitor_token": "",
            "visitor_id": session["visitor_id"],
            "conversation_id": session["conversation_id"],
            "state": "bot",
            "last_seq": 0,
        }
        # After the CONNECT packet, as socketsvc does.
        sio.start_background_task(sio.emit, "session", payload, to=sid, namespace="/chat")

    @sio.on("disconnect", namespace="/chat")
    async def chat_disconnect(sid: str, reason: Any = None) -> None:
        sessions.pop(sid, None)

    @sio.on("message", namespace="/chat")
    async def chat_message(sid: str, data: Any = None) -> dict[str, Any]:
        session = sessions.get(sid)
        if session is None or not isinstance(data, dict):
            return {"ok": False, "error": {"code": "invalid", "message": "bad payload"}}
        session["seq"] += 1
        message = {
            "id": uuid.uuid4().hex,
            "conversation_id": session["conversation_id"],
            "seq": session["seq"],
            "client_id": data.get("client_id"),
            "sender": {"role": "visitor", "id": session["visitor_id"], "name": "Visitor"},
            "text": data.get("text"),
            "created_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        if relay:
            await sio.emit("message", message, to=sid, namespace="/chat")
            if session["agent_id"] is not None:
                room = f"agent:{session['agent_id']}"
                await sio.emit("message", message, room=room, namespace="/agent")
        return {"ok": True, "message": message}

    @sio.on("sync", namespace="/chat")
    async def chat_sync(sid: str, data: Any = None) -> dict[str, Any]:
        # Nothing is stored: what a client syncing after a reconnect gets from an empty history.
        session = sessions.get(sid)
        if session is None:
            return {"ok": False, "error": {"code": "unauthorized", "message": "no session"}}
        return {"ok": True, "messages": [], "state": "bot", "last_seq": session["seq"]}

    @sio.on("connect", namespace="/agent")
    async def agent_connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        agent = auth.get("agent_id") if isinstance(auth, dict) else None
        if not agent:
            raise socketio.exceptions.ConnectionRefusedError("agent_id missing")
        await sio.enter_room(sid, f"agent:{agent}", namespace="/agent")
        payload = {"agent_id": agent}
        sio.start_background_task(sio.emit, "session", payload, to=sid, namespace="/agent")

    app = web.Application(client_max_size=MAX_HTTP_BUFFER * 2)
    sio.attach(app)
    return app


async def serve(host: str, port: int, app: web.Application) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    for address in runner.addresses:
        print(f"listening on http://{address[0]}:{address[1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--relay", action="store_true", help="also relay to the agent's room")
    parser.add_argument("--ping-interval", type=float, default=25.0)
    parser.add_argument("--ping-timeout", type=float, default=20.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = build(args.relay, args.ping_interval, args.ping_timeout)
    asyncio.run(serve(args.host, args.port, app))


if __name__ == "__main__":
    main()
