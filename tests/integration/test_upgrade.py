"""Upgrade with data: a database made and filled by the previous release (commit 86c724c, before
migrations existed), then `socketsvc migrate` and the new code: every visitor resumes with its
token, every message is there in order, the row counts are unchanged. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import configparser
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from socketsvc.storage.database import create_engine
from socketsvc.storage.schema import BASELINE, HEAD
from tests.conftest import GENEROUS_LIMITS, ROOT, SECRET, ServiceProcess
from tests.support.chat_client import ChatClient
from tests.support.tokens import agent_token

PREVIOUS_RELEASE = "86c724c"
TABLES = ("visitors", "conversations", "messages", "read_marks")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's code as an import path, without dependencies (the venv's serve it).

    Laid out as its setup.cfg installs it (`package_dir`: namespaces/ is socketsvc.namespaces,
    client-demo/ is socketsvc.demo); copied rather than `pip install --target`ed because a
    `--no-build-isolation` build needs the `wheel` package, which the venv does not have."""
    tmp = tmp_path_factory.mktemp("previous")
    src, site = tmp / "src", tmp / "site"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    config = configparser.ConfigParser()
    config.read(src / "setup.cfg")
    mapped = dict(
        (line.split("=")[0].strip(), line.split("=")[1].strip())
        for line in config["options"]["package_dir"].strip().splitlines()
    )
    shutil.copytree(src / "socketsvc", site / "socketsvc")
    for package, folder in mapped.items():
        shutil.copytree(src / folder, site.joinpath(*package.split(".")))
    assert (site / "socketsvc" / "namespaces" / "__init__.py").is_file()
    assert not (site / "socketsvc" / "storage" / "migrations").exists()
    return site


async def counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return {
                t: (await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one()
                for t in TABLES
            }
    finally:
        await engine.dispose()


async def has_alembic_version(database_url: str) -> bool:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
            return "alembic_version" in names
    finally:
        await engine.dispose()


async def new_visitor(url: str, clients: list[ChatClient]) -> ChatClient:
    client = ChatClient(url)
    clients.append(client)
    await client.connect()
    await client.wait_for(lambda: client.of("session"), what="session")
    await client.wait_message(lambda m: m["seq"] == 1)
    return client


async def chat_with_the_previous_release(url: str) -> dict[str, dict[str, Any]]:
    """Three visitors talk to the bot; the second is handed off, accepted by an agent, answered
    and resolved. Returns each visitor's token, ids and `sync` from 0."""
    clients: list[ChatClient] = []
    try:
        visitors = [await new_visitor(url, clients) for _ in range(3)]
        for n, v in enumerate(visitors):
            for text in (f"visitor {n}: what is socketsvc", f"visitor {n}: how do I run the tests"):
                sent = await v.send(text)
                await v.wait_message(
                    lambda m, s=sent: (
                        m["seq"] > s["message"]["seq"] and m["sender"]["role"] == "bot"
                    )
                )
        agent = ChatClient(url, namespace="/agent")
        clients.append(agent)
        await agent.connect({"token": agent_token("alice", "Alice")})
        await agent.wait_for(lambda: agent.of("assigned"), what="snapshots")
        v = visitors[1]
        cid = v.session["conversation_id"]
        assert (await v.call("handoff", {"reason": "a human please"}))["state"] == "queued"
        assert (await agent.call("accept", {"conversation_id": cid}))["ok"]
        sent = await v.send("my order is late")
        await agent.wait_message(lambda m: m["seq"] == sent["message"]["seq"])
        reply = await agent.call(
            "message", {"conversation_id": cid, "client_id": "a-1", "text": "Let me check."}
        )
        assert reply["ok"], reply
        await v.wait_message(lambda m: m["client_id"] == "a-1")
        assert await v.call("read", {"seq": reply["message"]["seq"]}) == {"ok": True}
        assert (await agent.call("resolve", {"conversation_id": cid}))["ok"]
        await v.wait_for(lambda: v.of("state")[-1]["state"] == "resolved")
        recorded = {}
        for v in visitors:
            synced = await v.call("sync", {"after_seq": 0})
            assert synced["ok"], synced
            session = v.session
            recorded[session["visitor_id"]] = {
                "token": session["visitor_token"],
                "conversation_id": session["conversation_id"],
                "messages": synced["messages"],
            }
        return recorded
    finally:
        for client in clients:
            await client.close()


async def resume(url: str, recorded: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    clients: list[ChatClient] = []
    resumed = {}
    try:
        for visitor_id, before in recorded.items():
            v = ChatClient(url)
            clients.append(v)
            await v.connect({"visitor_token": before["token"]})
            await v.wait_for(lambda v=v: v.of("session"), what="session")
            synced = await v.call("sync", {"after_seq": 0})
            assert synced["ok"], synced
            resumed[visitor_id] = {
                "visitor_id": v.session["visitor_id"],
                "conversation_id": v.session["conversation_id"],
                "messages": synced["messages"],
            }
        return resumed
    finally:
        for client in clients:
            await client.close()


def migrate(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "socketsvc", "migrate"],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout.strip()


async def test_a_database_of_the_previous_release_is_migrated_and_served_unchanged(
    database_url: str, previous_release: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    kind = database_url.split(":")[0]
    env = {
        "DATABASE_URL": database_url,
        "SOCKETSVC_SECRET": SECRET,
        "LOG_LEVEL": "INFO",
        **GENEROUS_LIMITS,
    }
    old = ServiceProcess({**env, "PYTHONPATH": str(previous_release)}, cwd=tmp_path)
    old.start()
    try:
        recorded = await chat_with_the_previous_release(old.url)
    finally:
        assert old.stop() == 0, "".join(old.log)
    assert not await has_alembic_version(database_url), "the previous release did not run"
    before = await counts(database_url)

    first = migrate(env, tmp_path)
    assert first == (
        f"socketsvc migrate: existing schema recognised as the baseline {BASELINE} and stamped; "
        f"upgraded to {HEAD}"
    )
    second = migrate(env, tmp_path)
    assert second == f"socketsvc migrate: schema up to date at revision {HEAD}: nothing to do"

    new = ServiceProcess(env, cwd=tmp_path)
    new.start()
    try:
        resumed = await resume(new.url, recorded)
        ready = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", f"import urllib.request as u; u.urlopen('{new.url}/readyz')"],
            capture_output=True,
        )
        assert ready.returncode == 0, ready.stderr
    finally:
        assert new.stop() == 0, "".join(new.log)
    after = await counts(database_url)

    print(f"\n[{kind}] previous release {PREVIOUS_RELEASE} -> this code")
    print(f"[{kind}] {first}\n[{kind}] {second}")
    print(f"[{kind}] counts before: {before}")
    print(f"[{kind}] counts after:  {after}")
    for visitor_id, then in recorded.items():
        now = resumed[visitor_id]
        assert now["visitor_id"] == visitor_id
        assert now["conversation_id"] == then["conversation_id"]
        assert [(m["id"], m["seq"], m["text"]) for m in now["messages"]] == [
            (m["id"], m["seq"], m["text"]) for m in then["messages"]
        ]
        assert now["messages"] == then["messages"]
        assert [m["seq"] for m in now["messages"]] == list(range(1, len(now["messages"]) + 1))
        print(
            f"[{kind}] resumed visitor {visitor_id} in conversation {now['conversation_id']}: "
            f"sync from 0 = {len(now['messages'])} messages, seq 1..{now['messages'][-1]['seq']}, "
            f"identical; last: {now['messages'][-1]['sender']['role']}: "
            f"{now['messages'][-1]['text'][:40]!r}"
        )
    assert before == after
    assert before["visitors"] == 3 and before["conversations"] == 3
    assert before["messages"] == sum(len(r["messages"]) for r in recorded.values())
    print(f"[{kind}] {time.monotonic() - started:.1f} s")
