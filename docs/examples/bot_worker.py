"""A minimal socketsvc bot worker (docs/writing-a-bot.md), on python-socketio's client.

    SOCKETSVC_URL=http://localhost:8080 BOT_NAME=helper BOT_KEY=... \
        python docs/examples/bot_worker.py

It answers every visitor message with "You said: ...", and hands the conversation to a human
when the visitor asks for one. Replace `answer` with your bot. BOT_TOKEN (a JWT with role
`bot`) may replace BOT_KEY. Needs `pip install "python-socketio[asyncio_client]"`.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import socketio

sio = socketio.AsyncClient()


def answer(text: str) -> dict[str, Any]:
    """What the bot says: a reply, or a handoff to a human."""
    if re.search(r"\b(human|agent|person)\b", text, re.IGNORECASE):
        return {"handoff": {"reason": "visitor asked", "summary": f"The visitor wrote: {text}"}}
    return {"text": f"You said: {text}"}


@sio.on("ready", namespace="/bot")
async def ready(info: dict[str, Any]) -> None:
    print("ready", info["worker_id"], flush=True)


@sio.on("visitor_message", namespace="/bot")
async def visitor_message(delivery: dict[str, Any]) -> None:
    delivery_id = delivery["delivery_id"]
    said = answer((delivery.get("message") or {}).get("text", ""))
    if "handoff" in said:
        ack = await sio.call(
            "handoff", {"delivery_id": delivery_id, **said["handoff"]}, namespace="/bot"
        )
    else:
        # The same client_id on every attempt: a redelivered message is never stored twice.
        reply = {"delivery_id": delivery_id, "client_id": "reply", "text": said["text"]}
        ack = await sio.call("message", reply, namespace="/bot")
    print("answered" if ack["ok"] else f"not stored: {ack['error']}", delivery_id, flush=True)


async def main() -> None:
    auth: dict[str, Any] = {"bot": os.environ["BOT_NAME"]}
    if os.environ.get("BOT_TOKEN"):
        auth["token"] = os.environ["BOT_TOKEN"]
    else:
        auth["key"] = os.environ["BOT_KEY"]
    url = os.environ.get("SOCKETSVC_URL", "http://localhost:8080")
    await sio.connect(url, namespaces=["/bot"], auth=auth, transports=["websocket"])
    await sio.wait()


if __name__ == "__main__":
    asyncio.run(main())
