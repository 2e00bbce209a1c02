"""The agent desk's polish (issue 19) in Chromium: tests/e2e/desk_polish.test.mjs against a live
socketsvc on SQLite (what it drives is the pages; the queue's `first_text` and the snapshot's
`max_text_length` are tested on both databases in tests/integration/namespaces/test_agent.py).

The service runs with MAX_TEXT_LENGTH=300, so that the pages' limit is seen to come from the
service (their built-in default is 4000). The Node test signs agent JWTs with SOCKETSVC_SECRET and
reaches SOCKETSVC_CONTROL_URL, a tiny HTTP server in this process whose `POST /backdate`
(`{"conversation_id", "seqs": [...], "days": N}`) moves those messages' `created_at` N days back in
the service's database: the only way to get a history that spans several days in a test that lasts
seconds (the date separators).
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from socketsvc.storage.database import create_engine
from socketsvc.storage.tables import messages
from tests.conftest import SECRET
from tests.support.control import control_server
from tests.support.node import run_node_test

ROOT = Path(__file__).resolve().parents[2]
PLAYWRIGHT = ROOT / "node_modules" / "playwright-core"
CHROMIUM = Path("/usr/bin/chromium")
NODE_TIMEOUT = 240.0
MAX_TEXT = 300

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not PLAYWRIGHT.is_dir(),
        reason="node_modules/playwright-core is missing: run `npm ci` at the repository root",
    ),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
]


async def backdate(database_url: str, conversation_id: str, seqs: list[int], days: int) -> int:
    """Move the `created_at` of those messages `days` days back; how many rows changed."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            rows = (
                await conn.execute(
                    sa.select(messages.c.seq, messages.c.created_at).where(
                        messages.c.conversation_id == conversation_id, messages.c.seq.in_(seqs)
                    )
                )
            ).all()
            for seq, created_at in rows:
                await conn.execute(
                    messages.update()
                    .where(messages.c.conversation_id == conversation_id, messages.c.seq == seq)
                    .values(created_at=created_at - timedelta(days=days))
                )
            return len(rows)
    finally:
        await engine.dispose()


def backdate_action(database_url: str) -> dict[str, Any]:
    """`POST /backdate` for the Node test (tests/support/control.py)."""

    def run(body: dict[str, Any]) -> dict[str, Any]:
        seqs = [int(s) for s in body["seqs"]]
        coro = backdate(database_url, str(body["conversation_id"]), seqs, int(body["days"]))
        return {"changed": asyncio.run(coro)}

    return {"backdate": run}


@pytest.mark.service_env(MAX_TEXT_LENGTH=str(MAX_TEXT))
@pytest.mark.timeout(NODE_TIMEOUT + 60)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_desk_polish_in_browser(live_server: Any) -> None:
    """Shift+Enter in both composers, over-long text refused with a notice (the limit from the
    service, the service's own refusal shown too), a log being read left where it is, date
    separators, the focus ring on conversation items, queue cards with the first question, and
    the landing page at 375 px."""
    with control_server(backdate_action(live_server.env["DATABASE_URL"])) as control_url:
        env = dict(
            os.environ,
            SOCKETSVC_URL=str(live_server.url),
            SOCKETSVC_SECRET=SECRET,
            SOCKETSVC_CONTROL_URL=control_url,
            SOCKETSVC_MAX_TEXT=str(MAX_TEXT),
        )
        await run_node_test(
            "tests/e2e/desk_polish.test.mjs", env, str(live_server.url), NODE_TIMEOUT
        )
