"""Cross-site WebSocket hijacking: which Origins may open a connection, over long-polling and over
WebSocket, with the default (same origin only), an explicit list, and `*`. Prints `case -> result`.

A refused polling handshake is HTTP 400; a refused WebSocket upgrade is an HTTP 400 instead of
101. A request without Origin (not a browser) is always let through: browsers always send Origin
on WebSocket and cross-origin requests, so the check protects browser users, which is its job.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import socketio

from tests.conftest import AppServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

SHOP = "https://shop.example.com"
WWW = "https://www.shop.example.com"
EVIL = "https://evil.example"


def show(case: str, result: Any) -> None:
    print(f"{case:78} -> {result}")


async def polling(server: AppServer, origin: str | None, **headers: str) -> tuple[int, str | None]:
    """(status, Access-Control-Allow-Origin) of a polling handshake."""
    if origin is not None:
        headers["Origin"] = origin
    url = server.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        body = await response.text()
        if response.status == 200:
            assert body.startswith("0{"), body
        return response.status, response.headers.get("Access-Control-Allow-Origin")


async def preflight(server: AppServer, origin: str, wanted: str) -> int:
    url = server.url + "/socket.io/?EIO=4&transport=polling"
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": wanted,
    }
    async with aiohttp.ClientSession() as http, http.options(url, headers=headers) as response:
        return response.status


async def websocket(server: AppServer, origin: str | None) -> int:
    """101 if the upgrade was accepted (and Engine.IO opened), else the HTTP status."""
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    headers = {"Origin": origin} if origin is not None else {}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        opened = await ws.receive(timeout=5)
        await ws.close()
        assert opened.data.startswith("0{"), opened
        return 101


async def full_client(server: AppServer, origin: str, transport: str) -> str:
    """A python-socketio client sending `Origin` on every request: connected to /chat or not."""
    sio = socketio.AsyncClient(reconnection=False)
    try:
        await sio.connect(
            server.url,
            namespaces=["/chat"],
            transports=[transport],
            headers={"Origin": origin},
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError:
        return "refused"
    finally:
        await sio.disconnect()
    return "connected"


async def check(server: AppServer, label: str, origin: str | None, allowed: bool) -> None:
    status, cors = await polling(server, origin)
    upgrade = await websocket(server, origin)
    show(f"{label}: polling handshake, Origin {origin}", f"{status} (ACAO {cors})")
    show(f"{label}: websocket upgrade, Origin {origin}", upgrade)
    if allowed:
        assert status == 200 and upgrade == 101
        if origin is not None:
            assert cors == origin
    else:
        assert status == 400 and upgrade == 400
        assert cors is None


async def test_default_allows_only_the_same_origin(start_app):
    server = await start_app()
    host, port = server.url.removeprefix("http://").split(":")
    cases = [
        ("no Origin (not a browser)", None, True),
        ("same origin", server.url, True),
        ("foreign site", EVIL, False),
        ("same host, other port", f"http://{host}:{int(port) + 1}", False),
        ("same host and port, https", f"https://{host}:{port}", False),
        ("localhost alias of the same server", f"http://localhost:{port}", False),
        ("same origin with a path", server.url + "/", False),
        ("null (sandboxed iframe, file:)", "null", False),
    ]
    for label, origin, allowed in cases:
        await check(server, f"default: {label}", origin, allowed)
    for transport in ("polling", "websocket"):
        ok = await full_client(server, server.url, transport)
        bad = await full_client(server, EVIL, transport)
        show(f"default: python client over {transport}, same origin / foreign", f"{ok} / {bad}")
        assert (ok, bad) == ("connected", "refused")
    # A browser cannot add X-Forwarded-Host to a WebSocket upgrade, and asking to send it on
    # polling needs a preflight, which the origin check refuses.
    status = await preflight(server, EVIL, "x-forwarded-host")
    show("default: preflight from a foreign site asking for X-Forwarded-Host", status)
    assert status == 400


async def test_an_explicit_list_allows_exactly_those_origins(start_app):
    server = await start_app(ALLOWED_ORIGINS=f"{SHOP}, {WWW}/")
    cases = [
        ("listed", SHOP, True),
        ("listed (configured with a trailing slash)", WWW, True),
        ("no Origin (not a browser)", None, True),
        ("foreign site", EVIL, False),
        ("the listed origin as a subdomain of another", SHOP + ".evil.example", False),
        ("a look-alike", "https://evilshop.example.com", False),
        ("another subdomain", "https://api.shop.example.com", False),
        ("listed host over http", SHOP.replace("https", "http"), False),
        ("listed host, other port", SHOP + ":8443", False),
        ("the service's own origin (its demo pages)", server.url, True),
        ("null", "null", False),
    ]
    for label, origin, allowed in cases:
        await check(server, f"list: {label}", origin, allowed)
    for transport in ("polling", "websocket"):
        ok = await full_client(server, SHOP, transport)
        bad = await full_client(server, EVIL, transport)
        show(f"list: python client over {transport}, listed / foreign", f"{ok} / {bad}")
        assert (ok, bad) == ("connected", "refused")


async def test_star_allows_any_origin(start_app):
    server = await start_app(ALLOWED_ORIGINS="*")
    for label, origin in [("foreign site", EVIL), ("null", "null"), ("no Origin", None)]:
        await check(server, f"*: {label}", origin, True)
    for transport in ("polling", "websocket"):
        result = await full_client(server, EVIL, transport)
        show(f"*: python client over {transport} from a foreign site", result)
        assert result == "connected"
