"""A webhook bot receiver for socketsvc (`BOT=webhook`), as docs/webhook-bot.md shows it: checks
the signature, then answers `message.created` with an echo (put your bot there).

    BOT_WEBHOOK_SECRET=... python docs/examples/webhook_receiver.py   # listens on :9000
"""

import hashlib
import hmac
import json
import os
import time

from aiohttp import web

TOLERANCE = 300  # seconds a timestamp may be away from this clock


def verified(secret: bytes, timestamp: str | None, body: bytes, signature: str | None) -> bool:
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > TOLERANCE:
        return False  # too old (or from the future): a replayed request
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)


def make_app(secret: bytes) -> web.Application:
    async def hook(request: web.Request) -> web.Response:
        body = await request.read()  # the raw bytes: what was signed
        timestamp = request.headers.get("X-Socketsvc-Timestamp")
        if not verified(secret, timestamp, body, request.headers.get("X-Socketsvc-Signature")):
            return web.Response(status=401)
        event = json.loads(body)
        if event["event"] != "message.created":
            return web.Response(status=204)  # conversation.opened / resolved: nothing to say
        return web.json_response({"reply": f"You said: {event['message']['text']}"})

    app = web.Application()
    app.router.add_post("/socketsvc", hook)
    return app


if __name__ == "__main__":
    web.run_app(make_app(os.environ["BOT_WEBHOOK_SECRET"].encode()), port=9000)
