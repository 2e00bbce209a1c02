"""Run the Node end-to-end suites (tests/e2e/*.test.mjs) against a live socketsvc.

`live_server` (tests/conftest.py) starts the service on a free port, once per database backend;
the Node tests reach it at SOCKETSVC_URL with the official socket.io-client and headless Chromium.
The child process is awaited asynchronously so that a server running on the test's event loop
keeps serving while Node talks to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.node import run_node_test

ROOT = Path(__file__).resolve().parents[2]
SIO_CLIENT = ROOT / "node_modules" / "socket.io-client"
CHROMIUM = Path("/usr/bin/chromium")
NODE_TIMEOUT = 180.0

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not SIO_CLIENT.is_dir(),
        reason="node_modules/socket.io-client is missing: run `npm ci` at the repository root",
    ),
]


async def _run_node_suite(live_server: Any, test_file: str) -> None:
    env = dict(
        os.environ,
        SOCKETSVC_URL=str(live_server.url),
    )
    await run_node_test(f"tests/e2e/{test_file}", env, str(live_server.url), NODE_TIMEOUT)


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_socketio_client_chat(live_server: Any) -> None:
    """The official socket.io-client, over each transport, follows PROTOCOL.md's /chat story."""
    await _run_node_suite(live_server, "chat_client.test.mjs")


@pytest.mark.timeout(NODE_TIMEOUT + 60)
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
async def test_visitor_page_in_browser(live_server: Any) -> None:
    """The visitor demo page works in headless Chromium over the default and polling transports."""
    await _run_node_suite(live_server, "visitor_page.test.mjs")


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_socketio_client_polling_batches(live_server: Any) -> None:
    """socket.io-client's batched long-polling POSTs (a burst, and what was buffered while
    disconnected) are acked, stored once and in order, over polling and the default transports."""
    await _run_node_suite(live_server, "polling_batches.test.mjs")
