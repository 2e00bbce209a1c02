"""The webhook bot (`BOT=webhook`): each visitor message is POSTed, signed, to `BOT_WEBHOOK_URL`.

One `POST` per event, JSON (docs/webhook-bot.md has the wire format): `message.created` for
every visitor message while the conversation is with the bot (the reply comes back in the
response body), and, fire-and-forget, `conversation.opened` (where a conversation is stored) and
`conversation.resolved`. Every request is signed: `X-Socketsvc-Signature: sha256=<hex
HMAC-SHA256(secret, f"{timestamp}.{body}")>` with `X-Socketsvc-Timestamp` (unix seconds) and
`X-Socketsvc-Delivery` (the delivery id, the same for every attempt).

An attempt that fails (connection error, `BOT_WEBHOOK_ATTEMPT_TIMEOUT`, a 5xx or a 429) is
repeated up to `BOT_WEBHOOK_RETRIES` times after a backoff with jitter (a 429's or 503's
`Retry-After` in seconds is honoured), all within `BOT_TIMEOUT`; another 4xx is not repeated.
When no answer came, a visitor message gets `BOT_FALLBACK`: the knowledge-base bot answers, or the
conversation is queued for a human. The HTTP side is a `WebhookTransport` port
(`socketsvc.transport.webhook` implements it over aiohttp), so this module stays free of I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from socketsvc.runtime import metrics

from .base import BotContext, BotReply
from .kb_bot import KnowledgeBaseBot

log = logging.getLogger(__name__)

MESSAGE_CREATED: Final = "message.created"
SIGNATURE_HEADER: Final = "X-Socketsvc-Signature"
TIMESTAMP_HEADER: Final = "X-Socketsvc-Timestamp"
DELIVERY_HEADER: Final = "X-Socketsvc-Delivery"
ATTEMPT_HEADER: Final = "X-Socketsvc-Attempt"
TOLERANCE: Final = 300
"""Seconds a receiver should accept a timestamp away from its clock (the snippets' default)."""
HISTORY: Final = 10
"""Messages before the visitor's sent as `recent`."""
BACKOFF_BASE: Final = 0.25
"""Seconds before the first retry (doubling each time, up to `BACKOFF_CAP`), jittered."""
BACKOFF_CAP: Final = 5.0
MAX_BODY: Final = 64 * 1024
"""Bytes of a response body read; a longer one is malformed."""
MAX_REPLIES: Final = 10
MAX_REPLY_LENGTH: Final = 16000
CLOSE_WAIT: Final = 2.0
"""Seconds `close()` gives notifications still being sent."""


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`: the signature header's value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE,
) -> bool:
    """What a receiver checks: the timestamp is a number of seconds within `tolerance` of `now`,
    and the signature is `sign(secret, timestamp, body)` (compared in constant time)."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    moment = time.time() if now is None else now
    if abs(moment - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def encode(payload: Mapping[str, Any]) -> bytes:
    """The request body: compact JSON, UTF-8 (what is signed is exactly what is sent)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signed_headers(
    secret: str, delivery_id: str, body: bytes, attempt: int = 1, now: float | None = None
) -> dict[str, str]:
    """The headers of one attempt (signed at the time of the attempt)."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        DELIVERY_HEADER: delivery_id,
        ATTEMPT_HEADER: str(attempt),
    }


class WebhookError(Exception):
    """An attempt got no response: `kind` is `timeout` or `connect`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class WebhookResponse:
    status: int
    body: bytes
    """At most `MAX_BODY + 1` bytes."""
    retry_after: str | None = None


class WebhookTransport(Protocol):
    """`POST`s to the configured URL."""

    async def post(
        self, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> WebhookResponse:
        """One attempt, within `timeout` seconds; raises `WebhookError` without a response.
        Redirects are not followed (a 3xx is a response like a 4xx)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class WebhookConfig:
    """The BOT_WEBHOOK_* settings the bot uses (the URL belongs to the transport)."""

    secret: str
    retries: int = 3
    attempt_timeout: float = 5.0
    deadline: float = 10.0
    """BOT_TIMEOUT: seconds all attempts of one event may take."""
    fallback: str = "kb"
    """BOT_FALLBACK: `kb` or `queue`."""
    history: int = HISTORY


@dataclass(frozen=True)
class Answer:
    """What a receiver answered to a `message.created`."""

    replies: tuple[str, ...] = ()
    handoff: bool = False
    reason: str | None = None
    summary: str | None = None


class Malformed(ValueError):
    """A 2xx response whose body is no answer."""


def parse_answer(status: int, body: bytes) -> Answer:
    """The answer in a 2xx response: `{"reply": text}`, `{"replies": [text | {"text"}...]}`
    and/or `{"handoff": true | {"reason", "summary"}}`; 202, 204 or an empty body: nothing to
    say. Raises `Malformed` otherwise."""
    if status in (202, 204) or not body.strip():
        return Answer()
    if len(body) > MAX_BODY:
        raise Malformed(f"the body is over {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except ValueError:
        raise Malformed(f"not JSON: {body[:200]!r}") from None
    if not isinstance(data, dict):
        raise Malformed("the body is not a JSON object")
    replies: list[Any] = []
    if data.get("reply") is not None:
        replies.append(data["reply"])
    if data.get("replies") is not None:
        if not isinstance(data["replies"], list):
            raise Malformed("`replies` is not a list")
        replies.extend(r.get("text") if isinstance(r, dict) else r for r in data["replies"])
    texts = []
    for reply in replies:
        if not isinstance(reply, str):
            raise Malformed("a reply is not a string (or an object with a string `text`)")
        if len(reply) > MAX_REPLY_LENGTH:
            raise Malformed(f"a reply is over {MAX_REPLY_LENGTH} characters")
        if reply.strip():
            texts.append(reply.strip())
    if len(texts) > MAX_REPLIES:
        raise Malformed(f"over {MAX_REPLIES} replies")
    handoff = data.get("handoff")
    if handoff is None or handoff is False:
        return Answer(tuple(texts))
    if handoff is True:
        return Answer(tuple(texts), handoff=True)
    if not isinstance(handoff, dict):
        raise Malformed("`handoff` is not true or an object")
    reason, summary = handoff.get("reason"), handoff.get("summary")
    if not all(v is None or isinstance(v, str) for v in (reason, summary)):
        raise Malformed("`handoff.reason` and `handoff.summary` must be strings")
    return Answer(tuple(texts), True, reason or None, (summary or "").strip()[:2000] or None)


def backoff(retry: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number `retry` (1, 2, ...): `BACKOFF_BASE * 2**(retry-1)` capped at
    `BACKOFF_CAP`, of which a random half is taken off (so that receivers that failed for many
    deliveries at once are not all retried at the same moment)."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (retry - 1))
    return delay / 2 + rand() * delay / 2


def retry_after(value: str | None) -> float | None:
    """A `Retry-After` header in seconds (the HTTP-date form is ignored)."""
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookBot:
    """Asks the receiver at `BOT_WEBHOOK_URL`; implements `Bot` and `NotifiedBot`. Greets with
    the knowledge base's greeting (no request for a new visitor), and its `kb` bot is the
    fallback."""

    def __init__(
        self,
        kb_bot: KnowledgeBaseBot,
        config: WebhookConfig,
        transport: WebhookTransport,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kb_bot = kb_bot
        self.config = config
        self.transport = transport
        self.name = kb_bot.kb.bot_name
        self.history = config.history
        self._sleep = sleep
        self._clock = clock
        self._notifications: set[asyncio.Task[None]] = set()

    async def greeting(self, ctx: BotContext) -> str:
        return self.kb_bot.kb.greeting

    async def reply(self, ctx: BotContext, text: str) -> BotReply:
        """POST `message.created` and turn the answer into the reply; `BOT_FALLBACK` without
        one. The reply's `client_id` comes from the delivery id, so a visitor message answered
        twice is stored once."""
        message = ctx.message
        delivery_id = str(message["id"]) if message is not None else uuid.uuid4().hex
        visitor: dict[str, Any] = {"id": None, "name": ctx.visitor_name}
        if message is not None and isinstance(message.get("sender"), Mapping):
            visitor["id"] = message["sender"].get("id")
        payload = {
            "event": MESSAGE_CREATED,
            "id": delivery_id,
            "created_at": _now_iso(),
            "conversation": dict(ctx.conversation or {"id": ctx.conversation_id}),
            "message": dict(message) if message is not None else {"text": text},
            "recent": [dict(m) for m in ctx.recent],
            "visitor": visitor,
        }
        client_id = f"webhook:{delivery_id}"
        answer = await self.deliver(MESSAGE_CREATED, delivery_id, payload, ctx.conversation_id)
        if answer is not None:
            first, *more = answer.replies or ("",)
            return BotReply(
                first,
                matched=True,
                intent="webhook",
                handoff=answer.handoff,
                handoff_reason=answer.reason or ("webhook bot" if answer.handoff else None),
                handoff_summary=answer.summary,
                client_id=client_id,
                more=tuple(more),
            )
        if self.config.fallback == "queue":
            return BotReply(
                "",
                matched=False,
                handoff=True,
                handoff_reason="the webhook bot did not answer",
                client_id=client_id,
            )
        fallback = await self.kb_bot.reply(ctx, text)
        return replace(fallback, client_id=client_id)

    def notify(
        self, event: str, conversation: Mapping[str, Any], visitor: Mapping[str, Any]
    ) -> None:
        """Send `event` in the background (with retries; nothing waits for it)."""
        delivery_id = uuid.uuid4().hex
        payload = {
            "event": event,
            "id": delivery_id,
            "created_at": _now_iso(),
            "conversation": dict(conversation),
            "visitor": dict(visitor),
        }
        task = asyncio.get_running_loop().create_task(
            self._notify(event, delivery_id, payload, str(conversation.get("id"))),
            name=f"webhook:{event}",
        )
        self._notifications.add(task)
        task.add_done_callback(self._notifications.discard)

    async def _notify(
        self, event: str, delivery_id: str, payload: dict[str, Any], conversation_id: str
    ) -> None:
        try:
            await self.deliver(event, delivery_id, payload, conversation_id)
        except Exception:
            log.exception("webhook notification failed", extra={"conversation_id": conversation_id})

    async def deliver(
        self, event: str, delivery_id: str, payload: Mapping[str, Any], conversation_id: str
    ) -> Answer | None:
        """POST `payload` until an attempt succeeds, retries run out or the deadline comes;
        the answer of a 2xx, else None."""
        body = encode(payload)
        config = self.config
        end = self._clock() + config.deadline
        extra = {"conversation_id": conversation_id}
        attempt = 0
        while True:
            attempt += 1
            left = end - self._clock()
            if left <= 0:
                return self._outcome(event, "failed", None)
            wait: float | None = None
            try:
                response = await self.transport.post(
                    body,
                    signed_headers(config.secret, delivery_id, body, attempt),
                    min(config.attempt_timeout, left),
                )
            except WebhookError as exc:
                reason, detail = exc.kind, exc.detail
            else:
                status = response.status
                if 200 <= status < 300:
                    try:
                        answer = parse_answer(status, response.body)
                    except Malformed as exc:
                        log.warning("webhook answer is malformed (%s): %s", event, exc, extra=extra)
                        return self._outcome(event, "malformed", None)
                    replied = bool(answer.replies) or answer.handoff
                    return self._outcome(event, "replied" if replied else "accepted", answer)
                if status != 429 and status < 500:
                    log.warning(
                        "webhook refused %s with HTTP %d (not retried): %s",
                        event,
                        status,
                        response.body[:200].decode(errors="replace"),
                        extra=extra,
                    )
                    return self._outcome(event, "rejected", None)
                reason = "http_429" if status == 429 else "http_5xx"
                detail = f"HTTP {status}"
                wait = retry_after(response.retry_after)
            if attempt > config.retries:
                log.warning(
                    "webhook %s failed after %d attempts (%s)", event, attempt, detail, extra=extra
                )
                return self._outcome(event, "failed", None)
            delay = max(backoff(attempt), wait or 0.0)
            if self._clock() + delay >= end:
                log.warning(
                    "webhook %s failed (%s): no time left for another attempt within %g s",
                    event,
                    detail,
                    config.deadline,
                    extra=extra,
                )
                return self._outcome(event, "failed", None)
            metrics.WEBHOOK_RETRIES.labels(reason=reason).inc()
            log.info(
                "webhook %s attempt %d failed (%s); again in %.2f s",
                event,
                attempt,
                detail,
                delay,
                extra=extra,
            )
            await self._sleep(delay)

    @staticmethod
    def _outcome(event: str, outcome: str, answer: Answer | None) -> Answer | None:
        metrics.WEBHOOK_DELIVERIES.labels(event=event, outcome=outcome).inc()
        return answer

    async def close(self) -> None:
        """Let notifications still being sent finish (up to `CLOSE_WAIT`), then close the HTTP
        client."""
        if self._notifications:
            _, pending = await asyncio.wait(set(self._notifications), timeout=CLOSE_WAIT)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await self.transport.close()
