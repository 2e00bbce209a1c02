"""HTTP routes: health, readiness, metrics, the demo pages, and the visitors API (export, erase)."""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import re
from collections.abc import Awaitable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from socketsvc.domain.errors import NotFound
from socketsvc.keys import APP_METRICS, REDIS, SERVICES, SETTINGS

DEMO_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico)$")
VENDOR_FILE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*\.js$")


def demo_dir() -> Path:
    """Where the demo pages live (client-demo/ in a checkout, socketsvc/demo when installed)."""
    return Path(str(importlib.resources.files("socketsvc.demo")))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _check(check: Awaitable[None]) -> str:
    try:
        await asyncio.wait_for(check, timeout=2.0)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database and (if configured) Redis answer and the canary is heard."""
    app = request.app
    services = app[SERVICES]
    checks = {"database": await _check(services.store.ping())}
    if REDIS in app:
        manager = app[REDIS]
        checks["redis"] = await _check(manager.ping())
        checks["pubsub_canary"] = "ok" if manager.canary_ok else "error: not heard"
    if services.lifecycle.draining:
        checks["lifecycle"] = "error: shutting down"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest() + generate_latest(request.app[APP_METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


TEXT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
"""Served with `charset=utf-8`: a host page without `<meta charset>` would otherwise decode the
widget's script in its own default (windows-1252), and "Online · ..." would read "Online Â· ..."."""


def static_file(path: Path) -> web.FileResponse:
    """A demo file, text types labelled UTF-8. Scripts may be loaded from any origin (the
    widget's modules are fetched with CORS from the customer's site)."""
    headers = {}
    text_type = TEXT_TYPES.get(path.suffix)
    if text_type is not None:
        headers["Content-Type"] = f"{text_type}; charset=utf-8"
    if path.suffix == ".js":
        headers["Access-Control-Allow-Origin"] = "*"
    return web.FileResponse(path, headers=headers)


async def index(request: web.Request) -> web.FileResponse:
    return static_file(demo_dir() / "index.html")


async def demo_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = demo_dir() / name
    if not DEMO_FILE.match(name) or not path.is_file():
        raise web.HTTPNotFound()
    return static_file(path)


async def vendor_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = demo_dir() / "vendor" / name
    if not VENDOR_FILE.match(name) or not path.is_file():
        raise web.HTTPNotFound()
    return static_file(path)


async def dev_agent_token(request: web.Request) -> web.Response:
    """DEV_MODE only: mint an agent JWT for the console's sign-in button."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    agent_id, name = body.get("id"), body.get("name")
    if not isinstance(agent_id, str) or not agent_id.strip() or len(agent_id) > 128:
        agent_id = "dev-agent"
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        name = "Dev Agent"
    token = request.app[SERVICES].tokens.mint_agent(agent_id.strip(), name.strip(), ttl=12 * 3600)
    return web.json_response({"token": token, "id": agent_id.strip(), "name": name.strip()})


async def config(request: web.Request) -> web.Response:
    """What the demo pages need to know about this deployment."""
    return web.json_response({"dev_mode": request.app[SETTINGS].dev_mode})


def _admin(request: web.Request) -> web.Response | None:
    """None when the request carries `Authorization: Bearer $ADMIN_TOKEN`, else the 401."""
    expected = request.app[SETTINGS].admin_token
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if (
        expected is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    ):
        return None
    message = "ADMIN_TOKEN is not set" if expected is None else "a valid bearer token is required"
    return web.json_response(
        {"error": "unauthorized", "message": message},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="socketsvc"'},
    )


async def export_visitor(request: web.Request) -> web.Response:
    """`GET /api/visitors/{id}`: the visitor's conversations, messages and read marks."""
    refused = _admin(request)
    if refused is not None:
        return refused
    try:
        record = await request.app[SERVICES].privacy.export(request.match_info["visitor_id"])
    except NotFound:
        return web.json_response({"error": "not_found", "message": "no such visitor"}, status=404)
    return web.json_response(record)


async def erase_visitor(request: web.Request) -> web.Response:
    """`DELETE /api/visitors/{id}`: every row of the visitor deleted; the counts per table."""
    refused = _admin(request)
    if refused is not None:
        return refused
    try:
        counts = await request.app[SERVICES].privacy.erase(request.match_info["visitor_id"])
    except NotFound:
        return web.json_response({"error": "not_found", "message": "no such visitor"}, status=404)
    return web.json_response({"erased": True, "deleted": counts})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/config.json", config)
    app.router.add_get("/api/visitors/{visitor_id}", export_visitor)
    app.router.add_delete("/api/visitors/{visitor_id}", erase_visitor)
    if app[SETTINGS].dev_mode:
        app.router.add_post("/dev/agent-token", dev_agent_token)
    app.router.add_get("/", index)
    app.router.add_get("/vendor/{name}", vendor_file)
    app.router.add_get("/{name}", demo_file)
