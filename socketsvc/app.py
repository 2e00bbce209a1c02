"""`create_app(settings)`: the aiohttp application with Socket.IO attached."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import socketio
from aiohttp import web

from socketsvc import web as routes
from socketsvc.bots.loader import load_bot
from socketsvc.broadcast import SocketIOBroadcaster
from socketsvc.keys import BOT, SERVICES, SETTINGS, SIO, STORE
from socketsvc.namespaces.agent import AgentNamespace
from socketsvc.namespaces.chat import ChatNamespace
from socketsvc.server import SocketServer
from socketsvc.services import Services
from socketsvc.settings import Settings
from socketsvc.storage.store import Store

log = logging.getLogger(__name__)

MAX_HTTP_BUFFER = 64 * 1024
"""Far below 256 KB, where long-polling bodies get cut short (see docs/operations.md)."""


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_HTTP_BUFFER * 2)
    app[SETTINGS] = settings
    manager = None
    if settings.redis_url is not None:
        # Short socket timeouts: a hung Redis must not stall emits for long (DESIGN.md).
        manager = socketio.AsyncRedisManager(
            settings.redis_url,
            redis_options={"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
        )
    sio = SocketServer(
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
    )
    sio.attach(app)
    app[SIO] = sio
    routes.add_routes(app)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_bot)
    app.cleanup_ctx.append(_services)
    app.on_shutdown.append(_close_connections)
    return app


def _cors(settings: Settings) -> Any:
    if settings.allowed_origins is None:
        return None  # same origin only
    if settings.allowed_origins == ("*",):
        log.warning("ALLOWED_ORIGINS=*: any web site may open connections to this service")
        return "*"
    return list(settings.allowed_origins)


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await Store.open(settings.database_url)
    app[STORE] = store
    log.info("database ready (%s)", store.engine.dialect.name)
    yield
    await store.close()


async def _bot(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    bot = load_bot(settings.bot, kb_path=settings.bot_kb_path, delay=settings.bot_delay)
    app[BOT] = bot
    yield
    await bot.close()


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings, sio = app[SETTINGS], app[SIO]
    if settings.secret_source != "env":
        log.warning(
            "SOCKETSVC_SECRET is not set: using the generated secret in %s; production must set it",
            settings.secret_source,
        )
    services = Services.build(settings, app[STORE], SocketIOBroadcaster(sio), app[BOT])
    app[SERVICES] = services
    sio.register_namespace(ChatNamespace(services))
    sio.register_namespace(AgentNamespace(services))
    presence = services.tasks.spawn(services.presence.run(), name="presence")
    yield
    presence.cancel()
    await services.tasks.drain(timeout=5.0)
    try:
        await services.presence.close()
    except Exception:
        log.warning("could not clear this process's agent connections", exc_info=True)


async def _close_connections(app: web.Application) -> None:
    """Close every Engine.IO socket so clients reconnect (to another process) at once."""
    sio = app[SIO]
    sockets = list(sio.eio.sockets.values())
    for sock in sockets:
        try:
            await sock.close(wait=False, abort=False)
        except Exception:  # pragma: no cover - best effort while shutting down
            log.debug("closing a socket failed", exc_info=True)
    if sockets:
        log.info("closed %d connections for shutdown", len(sockets))
