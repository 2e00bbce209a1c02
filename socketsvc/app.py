"""`create_app(settings)`: the aiohttp application with Socket.IO attached."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from socketsvc.bots.loader import load_bot
from socketsvc.bots.openai_bot import LLMConfig
from socketsvc.bots.webhook_bot import WebhookConfig
from socketsvc.keys import APP_METRICS, BOT, REDIS, SERVICES, SETTINGS, SIO, STORE
from socketsvc.llm.client import OpenAIChatClient
from socketsvc.namespaces.agent import AgentNamespace
from socketsvc.namespaces.bot import BotNamespace
from socketsvc.namespaces.chat import ChatNamespace
from socketsvc.runtime import web as routes
from socketsvc.services import Services
from socketsvc.settings import Settings
from socketsvc.storage.store import Store
from socketsvc.transport import codec as jsoncodec
from socketsvc.transport.broadcast import SocketIOBroadcaster
from socketsvc.transport.connections import ConnectionCollector
from socketsvc.transport.managers import LeanManager
from socketsvc.transport.origins import cors_setting
from socketsvc.transport.packets import Packet
from socketsvc.transport.patches import apply as apply_patches
from socketsvc.transport.patches import socketio_rooms
from socketsvc.transport.pubsub import initialize_now, redis_manager
from socketsvc.transport.server import build_server
from socketsvc.transport.webhook import WebhookClient

log = logging.getLogger(__name__)

MAX_HTTP_BUFFER = 64 * 1024
"""Far below 256 KB, where long-polling bodies get cut short (see docs/operations.md)."""


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_HTTP_BUFFER * 2)
    app[SETTINGS] = settings
    # Overrides of dependencies' private APIs, where the installed versions are the tested ones
    # (else the stock code path, with a warning); see socketsvc/transport/patches.
    applied = apply_patches()
    manager: LeanManager
    if settings.redis_url is not None:
        # Short socket timeouts: a hung Redis must not stall emits for long (DESIGN.md).
        pubsub = redis_manager(
            settings.redis_url, settings.redis_channel, socket_timeout=2.0, applied=applied
        )
        app[REDIS] = pubsub
        manager = pubsub
    else:
        manager = LeanManager()
    manager.indexed_rooms = socketio_rooms.PATCH in applied
    sio = build_server(
        applied,
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=_cors(settings),
        # One event at a time per connection: messages are stored in the order they were sent.
        async_handlers=False,
        max_http_buffer_size=MAX_HTTP_BUFFER,
        ping_interval=settings.ping_interval,
        ping_timeout=settings.ping_timeout,
        logger=False,
        engineio_logger=False,
        serializer=Packet,
        json=jsoncodec,
    )
    sio.attach(app)
    app[SIO] = sio
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ConnectionCollector(sio))
    app[APP_METRICS] = registry
    routes.add_routes(app)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_bot)
    app.cleanup_ctx.append(_services)
    app.on_shutdown.append(_close_connections)
    return app


def _cors(settings: Settings) -> Any:
    if settings.allowed_origins == ("*",):
        log.warning("ALLOWED_ORIGINS=*: any web site may open connections to this service")
    return cors_setting(settings.allowed_origins)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await Store.open(
        settings.database_url, settings.commit_delay, settings.sqlite_busy_timeout
    )
    app[STORE] = store
    log.info(
        "database ready (%s; %s)",
        store.engine.dialect.name,
        store.schema.describe() if store.schema else "schema not checked",
    )
    yield
    await store.close()


async def _bot(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    bot = load_bot(
        settings.bot,
        kb_path=settings.bot_kb_path,
        delay=settings.bot_delay,
        llm=_llm(settings),
        webhook=_webhook(settings),
    )
    app[BOT] = bot
    yield
    await bot.close()


def _llm(settings: Settings) -> tuple[LLMConfig, OpenAIChatClient] | None:
    """The LLM bot's model settings and HTTP client, with BOT=openai."""
    if settings.bot.strip() != "openai":
        return None
    assert settings.llm_base_url is not None and settings.llm_model is not None
    config = LLMConfig(
        model=settings.llm_model,
        system_prompt=settings.llm_system_prompt,
        max_tokens=settings.llm_max_tokens,
    )
    client = OpenAIChatClient(settings.llm_base_url, settings.llm_api_key, settings.llm_timeout)
    return config, client


def _webhook(settings: Settings) -> tuple[WebhookConfig, WebhookClient] | None:
    """The webhook bot's settings and HTTP client, with BOT=webhook."""
    if settings.bot.strip() != "webhook":
        return None
    assert settings.bot_webhook_url is not None and settings.bot_webhook_secret is not None
    config = WebhookConfig(
        secret=settings.bot_webhook_secret,
        retries=settings.bot_webhook_retries,
        attempt_timeout=settings.bot_webhook_attempt_timeout,
        deadline=settings.bot_timeout,
        fallback=settings.bot_fallback,
    )
    return config, WebhookClient(settings.bot_webhook_url)


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings, sio = app[SETTINGS], app[SIO]
    if settings.secret_source != "env":
        log.warning(
            "SOCKETSVC_SECRET is not set: using the generated secret in %s; production must set it",
            settings.secret_source,
        )
    broadcaster = SocketIOBroadcaster(sio)
    services = Services.build(settings, app[STORE], broadcaster, app[BOT], channel=broadcaster)
    app[SERVICES] = services
    sio.register_namespace(ChatNamespace(services))
    sio.register_namespace(AgentNamespace(services))
    sio.register_namespace(BotNamespace(services))
    # Subscribe now rather than on the first connection, so the canary works at once.
    initialize_now(sio)
    background = [services.tasks.spawn(services.presence.run(), name="presence")]
    if REDIS in app:
        background.append(services.tasks.spawn(app[REDIS].run_canary(), name="canary"))
    if services.bot_dispatch is not None:
        background.append(services.tasks.spawn(services.bot_dispatch.run(), name="bot-dispatch"))
    if services.privacy.retention_enabled:
        background.append(services.tasks.spawn(services.privacy.run(), name="retention"))
    yield
    for task in background:
        task.cancel()
    await services.tasks.drain(timeout=3.0)
    try:
        await services.presence.close()
    except Exception:
        log.warning("could not clear this process's agent connections", exc_info=True)
    if REDIS in app:
        await app[REDIS].close()


async def _close_connections(app: web.Application) -> None:
    """Refuse new events, let in-flight ones finish (up to 3 s), then close every Engine.IO
    socket so that clients reconnect (to another process) at once."""
    sio = app[SIO]
    if SERVICES in app:
        lifecycle = app[SERVICES].lifecycle
        if not await lifecycle.drain(timeout=3.0):
            log.warning("%d events still in flight at shutdown", lifecycle.in_flight)
    sockets = list(sio.eio.sockets.values())
    for sock in sockets:
        try:
            # No Engine.IO CLOSE packet: clients take that as "the server sent me away" and
            # python-socketio's client then never reconnects. Ending the socket's writer closes
            # the WebSocket (or answers the held long-poll) instead, a transport close, after
            # which every client reconnects at once.
            await sock.close(wait=False, abort=True)
            sock.queue.put_nowait(None)
        except Exception:  # pragma: no cover - best effort while shutting down
            log.debug("closing a socket failed", exc_info=True)
    if sockets:
        log.info("closed %d connections for shutdown", len(sockets))
