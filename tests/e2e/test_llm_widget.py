"""The widget in headless Chromium draws a streamed LLM reply as it grows (BOT=openai).

The service runs as a subprocess with BOT=openai pointed at a local OpenAI-compatible server
started here, in the test's event loop (tests/support/llm_server.py). No model can run here;
that server speaks the real wire format of `/v1/chat/completions` with `stream: true`
(server-sent events, `data: {chunk}` lines, `data: [DONE]`), slowly enough for the draft to be
seen growing. tests/e2e/llm_widget.test.mjs drives the page.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.llm_server import llm_server
from tests.support.node import run_node_test

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT = ROOT / "node_modules" / "playwright-core"
CHROMIUM = Path("/usr/bin/chromium")
NODE_TIMEOUT = 90.0
PIECES = ["Streaming ", "replies ", "grow ", "word ", "by ", "word ", "in ", "the ", "widget."]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not PLAYWRIGHT.is_dir(), reason="node_modules/playwright-core is missing"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]


@pytest.mark.timeout(NODE_TIMEOUT + 60)
async def test_widget_draws_the_reply_growing(live_server: Any, tmp_path: Path) -> None:
    report = tmp_path / "draft-lengths.json"
    async with llm_server(pieces=PIECES, delay=0.25) as server:
        live_server.env.update(BOT="openai", LLM_BASE_URL=server.base_url, LLM_MODEL="local")

        def restart() -> None:
            live_server.stop()
            live_server.start(port=live_server.port)

        await asyncio.to_thread(restart)
        env = dict(
            os.environ,
            SOCKETSVC_URL=live_server.url,
            SOCKETSVC_LLM_ANSWER="".join(PIECES).strip(),
            SOCKETSVC_LLM_REPORT=str(report),
        )
        await run_node_test("tests/e2e/llm_widget.test.mjs", env, live_server.url, NODE_TIMEOUT)
        assert len(server.requests) == 1
    lengths = json.loads(report.read_text())
    print(f"draft text lengths seen in Chromium: {lengths}")
    assert len(lengths) >= 2 and lengths == sorted(set(lengths))
