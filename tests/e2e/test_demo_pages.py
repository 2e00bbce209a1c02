"""Run the demo pages' browser tests against a live socketsvc, once per database backend.

- tests/e2e/demo_flow.test.mjs: a visitor on the landing page's widget and an agent on the console,
  from the bot's greeting to Resolve, over the default transports and over long-polling.
- tests/e2e/widget_restart.test.mjs: the service stops and starts again mid-chat; the message the
  visitor sent during the outage is delivered exactly once.

The Node tests get SOCKETSVC_URL, an agent JWT in SOCKETSVC_AGENT_TOKEN (minted here with the
service's secret), and SOCKETSVC_CONTROL_URL: a tiny HTTP server in this process whose POST /stop,
/start and /restart stop and start `live_server` on the same port and database.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from socketsvc.domain.tokens import TokenService
from tests.conftest import SECRET
from tests.support.control import control_server
from tests.support.node import run_node_test

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT = ROOT / "node_modules" / "playwright-core"
CHROMIUM = Path("/usr/bin/chromium")
NODE_TIMEOUT = 150.0

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not PLAYWRIGHT.is_dir(),
        reason="node_modules/playwright-core is missing: run `npm ci` at the repository root",
    ),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]


def service_control(service: Any) -> dict[str, Any]:
    """Actions that stop, start and restart `service` (a tests.conftest.ServiceProcess)."""

    def act(action: str) -> Any:
        def run(body: dict[str, Any]) -> dict[str, Any]:
            if action in ("stop", "restart"):
                service.stop()
            if action in ("start", "restart"):
                service.start(port=service.port)
            return {"action": action, "url": service.url}

        return run

    return {action: act(action) for action in ("stop", "start", "restart")}


async def _run_node(
    live_server: Any, test_file: str, timeout: float = NODE_TIMEOUT, **extra_env: str
) -> None:
    token = TokenService(SECRET, 3600).mint_agent("ada", "Ada Lovelace")
    with control_server(service_control(live_server)) as control_url:
        env = dict(
            os.environ,
            SOCKETSVC_URL=str(live_server.url),
            SOCKETSVC_AGENT_TOKEN=token,
            SOCKETSVC_CONTROL_URL=control_url,
            **extra_env,
        )
        await run_node_test(f"tests/e2e/{test_file}", env, str(live_server.url), timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_demo_flow_in_browser(live_server: Any) -> None:
    """Visitor widget and agent console, bot to resolve, over both transports; DEV_MODE on, so
    the console's dev-token button is used too; and the widget on a customer site of another
    origin (in ALLOWED_ORIGINS, with the service's own origin for its own pages)."""
    embed_origin = f"http://localhost:{_free_port()}"
    live_server.env["DEV_MODE"] = "true"
    live_server.env["ALLOWED_ORIGINS"] = f"{embed_origin},{live_server.url}"

    def restart() -> None:
        live_server.stop()
        live_server.start(port=live_server.port)

    await asyncio.to_thread(restart)
    await _run_node(
        live_server,
        "demo_flow.test.mjs",
        SOCKETSVC_DEV_MODE="1",
        SOCKETSVC_EMBED_ORIGIN=embed_origin,
    )


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_widget_survives_a_restart(live_server: Any) -> None:
    """A message sent while the service is down is delivered exactly once when it is back."""
    await _run_node(live_server, "widget_restart.test.mjs")


# SQLite only: what this drives is the widget's outbox, budget and reconnects (a minute of
# browser time); the service's storage under the same traffic runs on both databases in the
# integration tests, and the other browser tests here run on both.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.timeout(NODE_TIMEOUT + 360)
async def test_widget_delivery_in_browser(live_server: Any) -> None:
    """Under the DEFAULT message budget: 40 messages typed 50 ms apart into the widget (default
    transports and polling), again with the network offline for 10 s in the middle, and 40 from
    the agent console: stored in typed order, each once; the reconnecting state within 2 s of
    going offline; a host page without <meta charset>; the header following agents' presence."""
    for name in ("MESSAGE_RATE", "MESSAGE_BURST"):
        live_server.env.pop(name, None)

    def restart() -> None:
        live_server.stop()
        live_server.start(port=live_server.port)

    await asyncio.to_thread(restart)
    await _run_node(live_server, "widget_delivery.test.mjs", timeout=NODE_TIMEOUT + 300)
