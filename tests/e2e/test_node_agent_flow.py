"""Run the Agents acceptance test (tests/e2e/agent_flow.test.mjs) against a live socketsvc.

`live_server` (tests/conftest.py) starts the service on a free port, once per database backend;
the Node test reaches it at SOCKETSVC_URL with the official socket.io-client and mints its agent
JWTs with SOCKETSVC_SECRET. The child process is awaited asynchronously so that a server running on
the test's event loop keeps serving while Node talks to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SECRET
from tests.support.node import run_node_test

ROOT = Path(__file__).resolve().parents[2]
SIO_CLIENT = ROOT / "node_modules" / "socket.io-client"
TEST_FILE = "tests/e2e/agent_flow.test.mjs"
NODE_TIMEOUT = 180.0

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not SIO_CLIENT.is_dir(),
        reason="node_modules/socket.io-client is missing: run `npm ci` at the repository root",
    ),
]


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_socketio_client_agent_flow(live_server: Any) -> None:
    """A visitor and two agents on the official socket.io-client follow the /agent story."""
    env = dict(
        os.environ,
        SOCKETSVC_URL=str(live_server.url),
        SOCKETSVC_SECRET=SECRET,
    )
    await run_node_test(TEST_FILE, env, str(live_server.url), NODE_TIMEOUT)
