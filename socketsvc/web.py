"""HTTP routes: health, readiness, metrics, and the demo pages."""

from __future__ import annotations

import asyncio
import importlib.resources
import re
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from socketsvc.keys import SERVICES

DEMO_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico)$")


def demo_dir() -> Path:
    """Where the demo pages live (client-demo/ in a checkout, socketsvc/demo when installed)."""
    return Path(str(importlib.resources.files("socketsvc.demo")))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(services.store.ping(), timeout=2.0)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(demo_dir() / "index.html")


async def demo_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = demo_dir() / name
    if not DEMO_FILE.match(name) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    app.router.add_static("/vendor/", demo_dir() / "vendor")
    app.router.add_get("/{name}", demo_file)
