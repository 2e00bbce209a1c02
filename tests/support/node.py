"""Run a Node test file (node:test, spec reporter) against the service and fail with its output."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


async def run_node_test(
    test_file: str, env: Mapping[str, str], server_url: str, timeout: float
) -> None:
    """`node --test` on `test_file` (relative to the repo root); pytest.fail unless it passes."""
    cmd = ["node", "--test", "--test-reporter=spec", test_file]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=ROOT,
        env={**env, "NO_COLOR": "1", "FORCE_COLOR": "0"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(
            f"{' '.join(cmd)} did not finish within {timeout:.0f} s; output so far:\n"
            + out.decode(errors="replace"),
            pytrace=False,
        )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited with {proc.returncode} (server {server_url}):\n"
            + out.decode(errors="replace"),
            pytrace=False,
        )
