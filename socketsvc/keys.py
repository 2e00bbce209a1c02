"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

import socketio
from aiohttp import web
from prometheus_client import CollectorRegistry

from socketsvc.bots.base import Bot
from socketsvc.services import Services
from socketsvc.settings import Settings
from socketsvc.storage.store import Store
from socketsvc.transport.pubsub import RedisManager

SETTINGS = web.AppKey("settings", Settings)
SIO = web.AppKey("sio", socketio.AsyncServer)
STORE = web.AppKey("store", Store)
BOT = web.AppKey("bot", Bot)
SERVICES = web.AppKey("services", Services)
REDIS = web.AppKey("redis", RedisManager)
APP_METRICS = web.AppKey("app_metrics", CollectorRegistry)
