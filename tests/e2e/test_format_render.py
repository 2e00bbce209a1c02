"""The widget's and console's light-markdown renderer (client-demo/format.js) in Chromium:
tests/e2e/format_render.test.mjs (code, links, lists; an XSS attempt rendered as text)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.node import run_node_test

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ROOT / "node_modules" / "playwright-core").is_dir(),
        reason="node_modules/playwright-core is missing: run `npm ci` at the repository root",
    ),
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="no /usr/bin/chromium"),
]


async def test_markdown_renderer_in_chromium() -> None:
    await run_node_test("tests/e2e/format_render.test.mjs", dict(os.environ), "(none)", 60.0)
