"""socketsvc benchmarks against a bare python-socketio server and Node socket.io, in one run.

    .venv/bin/python bench/run.py [--scenario a|b|c|d|all] [--quick] [--profile DIR]

Starts each server under test in turn on core 0 (``taskset -c 0``): socketsvc (``python -m
socketsvc``, SQLite in a temp file, or a fresh PostgreSQL database created and dropped here;
two processes through Redis for scenario c), the bare python-socketio server
(bench/servers/bare_socketio.py) and Node socket.io 4.8 (bench/servers/node_server.mjs). The load
generator (this process, lean Engine.IO client in bench/lean_client.py) runs on core 1 and prints
its own CPU% next to every figure, so a client-bound result is visible.

Scenarios (see bench/README.md):
  a  idle /chat visitors: server RSS per connection at 1k/5k/10k, handshakes/s during the ramp
  b  visitor message -> ack: p50/p99 at 1,000 msgs/s over 100 connections; max msgs/s, p99<50 ms
  c  visitor -> agent delivery p50/p99 at 1,000 msgs/s (1 process; 2 processes through Redis)
  d  long-polling clients: ack p50/p99 at 200 msgs/s over 50 connections
  e  reconnect storm: 10,000 visitors with tokens drop and reconnect (socket.io-client backoff)
     and sync; time until all are back; and two processes with one killed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bot_loop
import harness
from harness import (
    CpuWindow,
    RateResult,
    Spec,
    Target,
    abort_all,
    fmt,
    launch,
    log,
    new_http,
    open_clients,
    percentile,
    ratio,
    run_rate,
    settle,
    table,
    validate,
    wait_quiet,
    wait_until,
)
from lean_client import BaseSocket
from storm import kill_storm, resumed_ramp, storm


@dataclass(frozen=True)
class Config:
    quick: bool
    levels: tuple[int, ...]
    settle: float
    handshake_concurrency: int
    connections_b: int
    rate_b: float
    duration_b: float
    step_start: float
    step_factor: float
    step_duration: float
    step_max: float
    visitors_c: int
    agents_c: int
    rate_c: float
    duration_c: float
    connections_d: int
    rate_d: float
    duration_d: float
    storm_visitors: int
    profile: Path | None
    wait_quiet: float
    servers: frozenset[str]
    """Keys of the servers to run (see SERVER_KEYS); the bare baseline always runs."""

    @classmethod
    def make(
        cls, quick: bool, profile: Path | None, wait_quiet: float, servers: frozenset[str]
    ) -> Config:
        return cls(
            quick=quick,
            levels=(1000,) if quick else (1000, 5000, 10000),
            settle=2.0 if quick else 5.0,
            handshake_concurrency=200,
            connections_b=100,
            rate_b=1000.0,
            duration_b=3.0 if quick else 10.0,
            step_start=100.0,
            step_factor=1.25,
            step_duration=2.0 if quick else 3.0,
            step_max=60000.0,
            visitors_c=100,
            agents_c=10,
            rate_c=1000.0,
            duration_c=3.0 if quick else 10.0,
            connections_d=50,
            rate_d=200.0,
            duration_d=3.0 if quick else 10.0,
            storm_visitors=2000 if quick else 10000,
            profile=profile,
            wait_quiet=wait_quiet,
            servers=servers,
        )

    def pick(self, *specs: Spec) -> list[Spec]:
        return [s for s in specs if s.key in self.servers or s.kind == "bare"]


SQLITE = Spec("socketsvc SQLite", "socketsvc", "sqlite", key="sqlite")
POSTGRES = Spec("socketsvc PostgreSQL", "socketsvc", "postgres", key="postgres")
BARE = Spec("bare python-socketio", "bare", key="bare")
NODE = Spec("Node socket.io 4.8", "node", key="node")
HANDED_OFF = Spec(
    "socketsvc SQLite, handed off (bot idle)", "socketsvc", "sqlite", handoff=True, key="handoff"
)
TWO_PROCESSES = Spec(
    "socketsvc PostgreSQL, 2 processes + Redis", "socketsvc", "postgres", processes=2, key="redis"
)
SERVER_KEYS = ("sqlite", "handoff", "postgres", "redis", "bare", "node")
BASELINE = BARE.label
TAIL_LIMIT = 1.0
"""A step fails when the server is still busy this long after the last ack (deferred work)."""


@contextlib.asynccontextmanager
async def measured(cfg: Config, spec: Spec) -> AsyncIterator[Target]:
    """Wait for a quiet machine (other sessions' test suites share these 2 cores), then start
    the servers of `spec`."""
    note = await wait_quiet(cfg.wait_quiet)
    if note:
        log(f"{spec.label}: machine {note}")
    async with launch(spec) as target:
        yield target


# -- start-up check ----------------------------------------------------------------------------


async def validate_all() -> list[str]:
    """One round trip per server (WebSocket and long-polling) before measuring anything."""
    lines = []
    async with new_http() as http:
        for spec in (SQLITE, BARE, NODE):
            async with launch(spec) as target:
                lines.append(f"{spec.label}: {await validate(target, http)}")
                log(f"lean client OK against {lines[-1]}")
    return lines


# -- scenario a --------------------------------------------------------------------------------


async def scenario_a(cfg: Config) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    resumed: list[dict[str, Any]] = []
    for spec in cfg.pick(SQLITE, POSTGRES, BARE, NODE):
        async with measured(cfg, spec) as target, new_http() as http:
            await validate(target, http, polling=False)
            await asyncio.sleep(1.0)
            base_rss = target.rss_kib()
            clients: list[BaseSocket] = []
            try:
                for level in cfg.levels:
                    need = level - len(clients)
                    profiler = (
                        start_profiler(cfg, target, "a", 5.0) if level == cfg.levels[0] else None
                    )
                    ramp = await open_clients(
                        http,
                        target.visitor_url,
                        need,
                        concurrency=cfg.handshake_concurrency,
                        pids=target.pids,
                        start_index=len(clients),
                    )
                    clients.extend(ramp.clients)
                    finish_profiler(profiler)
                    gc.collect()
                    gc.freeze()  # keep the generator's own GC pauses short
                    await asyncio.sleep(cfg.settle)
                    rss = target.rss_kib()
                    alive = sum(1 for c in clients if not c.closed)
                    row = {
                        "server": spec.label,
                        "connections": level,
                        "alive": alive,
                        "failed": sum(ramp.failures.values()),
                        "failures": dict(ramp.failures),
                        "handshakes_per_s": ramp.rate,
                        "rss_base_mib": base_rss / 1024,
                        "rss_mib": rss / 1024,
                        "kib_per_conn": (rss - base_rss) / max(1, level),
                        "srv_cpu": ramp.cpu.srv_pct,
                        "gen_cpu": ramp.cpu.gen_pct,
                        "other": ramp.cpu.other,
                        "db_cpu": ramp.cpu.db_pct,
                    }
                    rows.append(row)
                    log(
                        f"a {spec.label} {level}: {alive} alive, {row['failed']} failed, "
                        f"{ramp.rate:,.0f} handshakes/s, RSS {rss / 1024:.1f} MiB "
                        f"({row['kib_per_conn']:.1f} KiB/conn), server CPU "
                        f"{ramp.cpu.srv_pct:.0f}%, generator CPU {ramp.cpu.gen_pct:.0f}%, "
                        f"PostgreSQL+Redis {ramp.cpu.db_pct:.0f}%, irq {ramp.cpu.irq_pct:.0f}%, "
                        f"{ramp.cpu.foreign_note}"
                    )
                    if ramp.failures:
                        log(f"  failures: {dict(ramp.failures)}")
                resumed.append(await resumed_rows(cfg, target, http, clients))
            finally:
                abort_all(clients)
    base = {r["connections"]: r for r in rows if r["server"] == BASELINE}
    out = []
    for r in rows:
        b = base.get(r["connections"])
        out.append(
            [
                r["server"],
                f"{r['connections']:,}",
                f"{r['alive']:,}",
                fmt(r["handshakes_per_s"], 0),
                ratio(r["handshakes_per_s"], b and b["handshakes_per_s"]),
                fmt(r["rss_base_mib"]),
                fmt(r["rss_mib"]),
                fmt(r["kib_per_conn"]),
                ratio(r["kib_per_conn"], b and b["kib_per_conn"]),
                fmt(r["srv_cpu"], 0),
                fmt(r["gen_cpu"], 0),
                fmt(r["db_cpu"], 0),
                r["other"],
            ]
        )
    text = table(
        "Scenario a: idle /chat visitors holding a session (ramp with "
        f"{cfg.handshake_concurrency} handshakes in flight, settle {cfg.settle:g} s)",
        [
            "server",
            "conns",
            "alive",
            "handshakes/s",
            "vs bare",
            "RSS before MiB",
            "RSS after MiB",
            "KiB/conn",
            "vs bare",
            "srv CPU% ramp",
            "gen CPU% ramp",
            "PG+Redis CPU%",
            "foreign CPU%",
        ],
        out,
    )
    base_r = next((r for r in resumed if r["server"] == BASELINE), None)
    resumed_table = table(
        "Scenario a, resumed visitors: handshakes/s of visitors reconnecting with their token "
        f"({cfg.handshake_concurrency} in flight; `never wrote`: nothing stored for them, "
        "`wrote once`: a stored conversation; the bare and Node servers ignore the token)",
        [
            "server",
            "visitors",
            "never wrote /s",
            "vs bare",
            "wrote once /s",
            "vs bare",
            "failed",
            "srv CPU%",
            "gen CPU%",
            "foreign CPU%",
        ],
        [
            [
                r["server"],
                f"{r['visitors']:,}",
                fmt(r["never_per_s"], 0),
                ratio(r["never_per_s"], base_r and base_r["never_per_s"]),
                fmt(r["wrote_per_s"], 0),
                ratio(r["wrote_per_s"], base_r and base_r["wrote_per_s"]),
                str(r["failed"]),
                fmt(r["srv_cpu"], 0),
                fmt(r["gen_cpu"], 0),
                r["other"],
            ]
            for r in resumed
        ],
    )
    return {"rows": rows, "resumed": resumed, "table": text + "\n\n" + resumed_table}


async def resumed_rows(
    cfg: Config, target: Target, http: Any, clients: list[BaseSocket]
) -> dict[str, Any]:
    """Reconnect with the tokens of idle visitors: half of a sample never wrote, the other half
    first writes one message (its conversation is then stored)."""
    n = min(len(clients) // 2, 1000)
    never = [c.session["visitor_token"] for c in clients[:n]]
    writers = clients[n : 2 * n]
    semaphore = asyncio.Semaphore(100)

    async def write(client: BaseSocket) -> None:
        async with semaphore:
            await client.call("message", {"client_id": "r-1", "text": "hello"}, 60.0)

    await asyncio.gather(*(write(c) for c in writers))
    await settle(writers, target.pids)
    wrote = [c.session["visitor_token"] for c in writers]
    never_rate, never_failed, cpu = await resumed_ramp(http, target, never)
    wrote_rate, wrote_failed, cpu2 = await resumed_ramp(http, target, wrote)
    log(
        f"a {target.label} resumed: never wrote {never_rate:,.0f}/s, wrote once "
        f"{wrote_rate:,.0f}/s, failed {never_failed + wrote_failed}, server CPU "
        f"{cpu.srv_pct:.0f}%/{cpu2.srv_pct:.0f}%, {cpu2.foreign_note}"
    )
    return {
        "server": target.label,
        "visitors": n,
        "never_per_s": never_rate,
        "wrote_per_s": wrote_rate,
        "failed": never_failed + wrote_failed,
        "srv_cpu": (cpu.srv_pct + cpu2.srv_pct) / 2,
        "gen_cpu": (cpu.gen_pct + cpu2.gen_pct) / 2,
        "other": cpu2.other,
    }


# -- scenario b --------------------------------------------------------------------------------


async def scenario_b(cfg: Config) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for spec in cfg.pick(SQLITE, HANDED_OFF, POSTGRES, BARE, NODE):
        async with measured(cfg, spec) as target, new_http() as http:
            await validate(target, http, polling=False)
            ramp = await open_clients(http, target.visitor_url, cfg.connections_b, concurrency=100)
            clients = ramp.clients
            if spec.handoff:
                for client in clients:
                    await client.call("handoff", {"reason": "benchmark"})
            try:
                # Warm-up: pools, caches, JIT (Node).
                await run_rate(clients, 200.0, 1.0, prefix="w")
                await settle(clients, target.pids)
                profiler = start_profiler(cfg, target, "b", cfg.duration_b + 1)
                whole = CpuWindow(target.pids)
                fixed = await run_rate(
                    clients, cfg.rate_b, cfg.duration_b, pids=target.pids, prefix="f"
                )
                finish_profiler(profiler)
                fixed.tail = await settle(clients, target.pids)
                # CPU per message, the work left after the acks (bot runner) included.
                whole.stop()
                cpu_ms = 1000.0 * whole.srv_seconds / max(1, fixed.acked)
                db_ms = 1000.0 * whole.db_seconds / max(1, fixed.acked)
                log(
                    f"b {spec.label} @{cfg.rate_b:g}/s: {describe(fixed)}, busy "
                    f"{fixed.tail:.2f} s after the last ack; {cpu_ms:.2f} ms server CPU per "
                    f"message (+{db_ms:.2f} ms PostgreSQL+Redis)"
                )
                # Steps go up from the fixed rate when it passed, else from step_start.
                best: RateResult | None = fixed if passes(fixed) else None
                failed: RateResult | None = None
                rate = cfg.rate_b * cfg.step_factor if best else cfg.step_start
                step = 0
                while rate <= cfg.step_max:
                    step += 1
                    res = await run_rate(
                        clients, rate, cfg.step_duration, pids=target.pids, prefix=f"s{step}-"
                    )
                    # Work left after the acks (the bot runner) must not pile up either.
                    res.tail = await settle(clients, target.pids)
                    ok = passes(res)
                    log(
                        f"  step {rate:,.0f}/s: {describe(res)}, busy {res.tail:.2f} s after "
                        f"the last ack -> {'pass' if ok else 'FAIL'}"
                    )
                    if not ok:
                        failed = res
                        break
                    best = res
                    if res.cpu is not None and res.cpu.gen_pct >= 97.0:
                        log("  generator saturated; stopping the steps (client-bound)")
                        break
                    rate *= cfg.step_factor
            finally:
                abort_all(clients)
        rows.append(
            {
                "server": spec.label,
                "fixed": fixed,
                "best": best,
                "failed": failed,
                "cpu_ms": cpu_ms,
                "db_ms": db_ms,
            }
        )
    base = next((r for r in rows if r["server"] == BASELINE), None)
    out = []
    for r in rows:
        fixed, best, failed = r["fixed"], r["best"], r["failed"]
        bf, bb = (base["fixed"], base["best"]) if base else (None, None)
        if failed is None:
            stop = "none: generator saturated or cap reached"
        else:
            stop = f"{failed.offered:,.0f}/s: p99 {failed.p(99):,.0f} ms"
            if failed.errors:
                stop += f", errors {dict(failed.errors)}"
            if failed.lost:
                stop += f", {failed.lost} unacked"
            if failed.tail >= TAIL_LIMIT:
                stop += f", busy {failed.tail:.1f} s after"
        fcpu, bcpu = fixed.cpu, best.cpu if best else None
        out.append(
            [
                r["server"],
                fmt(fixed.p(50), 2),
                fmt(fixed.p(99), 2),
                ratio(fixed.p(99), bf and bf.p(99)),
                fmt(fixed.achieved, 0),
                fmt(r["cpu_ms"], 2),
                ratio(r["cpu_ms"], base and base["cpu_ms"]),
                fmt(r["db_ms"], 2),
                fmt(fcpu.srv_pct, 0) if fcpu else "-",
                fmt(fcpu.gen_pct, 0) if fcpu else "-",
                fmt(fcpu.db_pct, 0) if fcpu else "-",
                fcpu.other if fcpu else "-",
                fmt(best.offered, 0) if best else "<" + fmt(cfg.step_start, 0),
                ratio(best.offered if best else None, bb.offered if bb else None),
                fmt(best.p(99), 1) if best else "-",
                fmt(bcpu.srv_pct, 0) if bcpu else "-",
                fmt(bcpu.gen_pct, 0) if bcpu else "-",
                bcpu.other if bcpu else "-",
                stop,
            ]
        )
    text = table(
        f"Scenario b: visitor message -> stored ack, {cfg.connections_b} WebSocket connections "
        f"(open loop; max = last step with p99 < 50 ms and every message acked ok, steps "
        f"x{cfg.step_factor:g} every {cfg.step_duration:g} s from {cfg.rate_b:g}/s when that "
        f"passed, else from {cfg.step_start:g}/s)",
        [
            "server",
            f"p50 ms @{cfg.rate_b:g}/s",
            "p99 ms",
            "p99 vs bare",
            "acked/s",
            "srv CPU ms/msg",
            "vs bare",
            "PG+Redis ms/msg",
            "srv CPU%",
            "gen CPU%",
            "PG+Redis CPU%",
            "foreign CPU%",
            "max msgs/s",
            "max vs bare",
            "p99 ms @max",
            "srv CPU% @max",
            "gen CPU% @max",
            "foreign CPU% @max",
            "first failing step",
        ],
        out,
    )
    bot_rows, bot_text = await bot_in_the_loop(cfg) if "sqlite" in cfg.servers else ([], "")
    return {
        "rows": [summarise_b(r) for r in rows],
        "bot_in_the_loop": bot_rows,
        "table": text + ("\n\n" + bot_text if bot_text else ""),
    }


BOT_RATE = 500.0


async def bot_in_the_loop(cfg: Config) -> tuple[list[dict[str, Any]], str]:
    """Visitor message -> the knowledge-base bot's reply delivered (bench/bot_loop.py): at
    BOT_RATE msgs/s, then steps up to the last rate with p99 < 50 ms and every reply back."""
    spec = Spec("socketsvc SQLite, kb bot answering", "socketsvc", "sqlite", bot="kb", key="sqlite")
    async with measured(cfg, spec) as target, new_http() as http:
        await validate(target, http, polling=False)
        replies = bot_loop.Replies()
        clients = await bot_loop.open_visitors(http, target.visitor_url, cfg.connections_b, replies)
        try:
            await bot_loop.run(clients, replies, 100.0, 1.0, target.pids, "w")
            await settle(clients, target.pids)
            fixed = await bot_loop.run(clients, replies, BOT_RATE, cfg.duration_b, target.pids, "f")
            fixed.tail = await settle(clients, target.pids)
            log(f"b {spec.label} @{BOT_RATE:g}/s: {describe(fixed)}")
            best = fixed if passes(fixed) else None
            failed = None
            rate = BOT_RATE * cfg.step_factor if best else cfg.step_start
            step = 0
            while rate <= cfg.step_max:
                step += 1
                res = await bot_loop.run(
                    clients, replies, rate, cfg.step_duration, target.pids, f"s{step}-"
                )
                res.tail = await settle(clients, target.pids)
                ok = passes(res)
                log(f"  bot step {rate:,.0f}/s: {describe(res)} -> {'pass' if ok else 'FAIL'}")
                if not ok:
                    failed = res
                    break
                best = res
                rate *= cfg.step_factor
        finally:
            abort_all(clients)
    row = [
        spec.label,
        fmt(fixed.p(50), 2),
        fmt(fixed.p(99), 2),
        f"{len(fixed.latencies):,}/{fixed.sent:,}",
        fmt(fixed.cpu.srv_pct if fixed.cpu else None, 0),
        fmt(fixed.cpu.gen_pct if fixed.cpu else None, 0),
        fixed.cpu.other if fixed.cpu else "-",
        fmt(best.offered, 0) if best else "<" + fmt(cfg.step_start, 0),
        fmt(best.p(99), 1) if best else "-",
        "none" if failed is None else f"{failed.offered:,.0f}/s: p99 {failed.p(99):,.0f} ms",
    ]
    text = table(
        f"Scenario b, the real bot in the loop: visitor message -> the default knowledge-base "
        f"bot's reply delivered ({cfg.connections_b} WebSocket connections, every message "
        f"answered; max = last step with p99 < 50 ms and every reply back; no bare baseline: "
        f"the bare servers have no bot)",
        [
            "server",
            f"reply p50 ms @{BOT_RATE:g}/s",
            "reply p99 ms",
            "replies/sent",
            "srv CPU%",
            "gen CPU%",
            "foreign CPU%",
            "max msgs/s",
            "reply p99 ms @max",
            "first failing step",
        ],
        [row],
    )
    summary = {
        "server": spec.label,
        "fixed": summarise(fixed),
        "max": summarise(best),
        "failed_step": summarise(failed),
    }
    return [summary], text


def passes(res: RateResult) -> bool:
    return res.p(99) < 50.0 and res.error_count == 0 and res.tail < TAIL_LIMIT


def describe(res: RateResult) -> str:
    cpu = res.cpu
    text = (
        f"sent {res.sent}, acked {res.acked} ({res.achieved:,.0f}/s in window), "
        f"p50 {res.p(50):.2f} ms, p99 {res.p(99):.2f} ms, max {max(res.latencies, default=0):.1f} "
        f"ms"
    )
    if res.send_lag:  # the bot-in-the-loop driver does not measure it
        text += f", send lag p99 {percentile(res.send_lag, 99):.2f} ms"
    if res.errors:
        text += f", errors {dict(res.errors)}"
    if cpu is not None:
        text += (
            f", server CPU {cpu.srv_pct:.0f}%, generator CPU {cpu.gen_pct:.0f}%, PostgreSQL+Redis "
            f"{cpu.db_pct:.0f}%, irq {cpu.irq_pct:.0f}%, {cpu.foreign_note}"
        )
    return text


def summarise(res: RateResult | None) -> dict[str, Any] | None:
    if res is None:
        return None
    return {
        "offered": res.offered,
        "sent": res.sent,
        "acked": res.acked,
        "achieved": res.achieved,
        "p50_ms": res.p(50),
        "p99_ms": res.p(99),
        "max_ms": max(res.latencies, default=0.0),
        "errors": dict(res.errors),
        "send_lag_p99_ms": percentile(res.send_lag, 99),
        "srv_cpu": res.cpu.srv_pct if res.cpu else None,
        "gen_cpu": res.cpu.gen_pct if res.cpu else None,
    }


def summarise_b(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": row["server"],
        "cpu_ms_per_msg": row["cpu_ms"],
        "db_ms_per_msg": row["db_ms"],
        "fixed": summarise(row["fixed"]),
        "max": summarise(row["best"]),
        "failed_step": summarise(row["failed"]),
    }


# -- profiling (optional) ----------------------------------------------------------------------


def start_profiler(cfg: Config, target: Target, scenario: str, duration: float) -> Any:
    if cfg.profile is None or target.spec.kind != "socketsvc":
        return None
    return harness.start_py_spy(cfg.profile, scenario, target.label, target.pids[0], duration)


def finish_profiler(proc: Any) -> None:
    if proc is None:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- scenario c --------------------------------------------------------------------------------


async def scenario_c(cfg: Config) -> dict[str, Any]:
    specs = cfg.pick(
        SQLITE,
        POSTGRES,
        TWO_PROCESSES,
        Spec(BARE.label + " (relay)", "bare", relay=True, key="bare"),
        Spec(NODE.label + " (relay)", "node", relay=True, key="node"),
    )
    rows: list[dict[str, Any]] = []
    for spec in specs:
        async with measured(cfg, spec) as target, new_http() as http:
            await validate(target, http, polling=False)
            row = await relay_run(cfg, target, http)
        rows.append(row)
    base = next((r for r in rows if r["server"].startswith(BASELINE)), None)
    out = []
    for r in rows:
        res: RateResult = r["result"]
        out.append(
            [
                r["server"],
                fmt(percentile(r["delivery"], 50), 2),
                fmt(percentile(r["delivery"], 99), 2),
                ratio(percentile(r["delivery"], 99), base and percentile(base["delivery"], 99)),
                fmt(res.p(50), 2),
                fmt(res.p(99), 2),
                f"{len(r['delivery']):,}/{res.sent:,}",
                fmt(res.cpu.srv_pct if res.cpu else None, 0),
                fmt(res.cpu.gen_pct if res.cpu else None, 0),
                fmt(res.cpu.db_pct if res.cpu else None, 0),
                res.cpu.other if res.cpu else "-",
            ]
        )
    text = table(
        f"Scenario c: visitor -> agent delivery at {cfg.rate_c:g} msgs/s, {cfg.visitors_c} "
        f"visitors assigned to {cfg.agents_c} agents (send -> agent receives `message`)",
        [
            "server",
            "deliver p50 ms",
            "deliver p99 ms",
            "p99 vs bare",
            "ack p50 ms",
            "ack p99 ms",
            "delivered/sent",
            "srv CPU%",
            "gen CPU%",
            "PG+Redis CPU%",
            "foreign CPU%",
        ],
        out,
    )
    summary = [
        {
            "server": r["server"],
            "delivery_p50_ms": percentile(r["delivery"], 50),
            "delivery_p99_ms": percentile(r["delivery"], 99),
            "delivered": len(r["delivery"]),
            **(summarise(r["result"]) or {}),
        }
        for r in rows
    ]
    return {"rows": summary, "table": text}


async def relay_run(cfg: Config, target: Target, http: Any) -> dict[str, Any]:
    sent_at: dict[str, float] = {}
    delivery: list[float] = []
    monotonic = time.monotonic

    def on_agent_event(sock: BaseSocket, event: str, data: Any) -> None:
        if event == "message" and isinstance(data, dict):
            sent = sent_at.pop(str(data.get("client_id")), None)
            if sent is not None:
                delivery.append((monotonic() - sent) * 1000.0)

    agent_ids = [f"agent-{k}" for k in range(cfg.agents_c)]
    socketsvc = target.spec.kind == "socketsvc"
    if socketsvc:
        from socketsvc.domain.tokens import TokenService

        tokens = TokenService(target.secret, 3600)
        visitors = await open_clients(http, target.visitor_url, cfg.visitors_c, concurrency=100)
        for client in visitors.clients:
            ack = await client.call("handoff", {"reason": "benchmark"})
            if not ack.get("ok"):
                raise RuntimeError(f"handoff refused: {ack}")
        agents = await open_clients(
            http,
            target.agent_url,
            cfg.agents_c,
            namespace="/agent",
            auth=lambda k: {"token": tokens.mint_agent(agent_ids[k], f"Agent {k}")},
            on_event=on_agent_event,
            concurrency=cfg.agents_c,
            wait_event="assigned",
        )
        if agents.failures:
            raise RuntimeError(f"agents refused: {dict(agents.failures)}")
        by_agent = {a.index: a for a in agents.clients}  # type: ignore[attr-defined]
        for client in visitors.clients:
            k = client.index % cfg.agents_c  # type: ignore[attr-defined]
            conversation = (client.session or {}).get("conversation_id")
            ack = await by_agent[k].call("accept", {"conversation_id": conversation})
            if not ack.get("ok"):
                raise RuntimeError(f"accept refused: {ack}")
    else:
        agents = await open_clients(
            http,
            target.agent_url,
            cfg.agents_c,
            namespace="/agent",
            auth=lambda k: {"agent_id": agent_ids[k]},
            on_event=on_agent_event,
            concurrency=cfg.agents_c,
        )
        visitors = await open_clients(
            http,
            target.visitor_url,
            cfg.visitors_c,
            concurrency=100,
            auth=lambda i: {"agent_id": agent_ids[i % cfg.agents_c]},
        )
    clients = visitors.clients
    if len(clients) != cfg.visitors_c or visitors.failures:
        raise RuntimeError(f"visitors failed: {dict(visitors.failures)}")
    try:
        await run_rate(clients, 200.0, 1.0, prefix="w", sent_at=sent_at)
        await settle(clients, target.pids)
        delivery.clear()
        sent_at.clear()
        result = await run_rate(
            clients, cfg.rate_c, cfg.duration_c, pids=target.pids, prefix="c", sent_at=sent_at
        )
        await wait_until(lambda: len(delivery) >= result.sent, 5.0)
        log(
            f"c {target.label}: delivered {len(delivery)}/{result.sent}, delivery p50 "
            f"{percentile(delivery, 50):.2f} ms p99 {percentile(delivery, 99):.2f} ms; ack "
            f"{describe(result)}"
        )
    finally:
        abort_all(clients)
        abort_all(agents.clients)
    return {"server": target.label, "result": result, "delivery": list(delivery)}


# -- scenario d --------------------------------------------------------------------------------


async def scenario_d(cfg: Config) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for spec in cfg.pick(SQLITE, POSTGRES, BARE, NODE):
        async with measured(cfg, spec) as target, new_http() as http:
            await validate(target, http)
            ramp = await open_clients(
                http, target.visitor_url, cfg.connections_d, concurrency=50, polling=True
            )
            if ramp.failures:
                raise RuntimeError(f"polling clients failed: {dict(ramp.failures)}")
            clients = ramp.clients
            try:
                await run_rate(clients, 50.0, 1.0, prefix="w")
                await settle(clients, target.pids)
                polls = sum(c.polls for c in clients)  # type: ignore[attr-defined]
                posts = sum(c.posts for c in clients)  # type: ignore[attr-defined]
                res = await run_rate(
                    clients, cfg.rate_d, cfg.duration_d, pids=target.pids, prefix="d"
                )
                polls = sum(c.polls for c in clients) - polls  # type: ignore[attr-defined]
                posts = sum(c.posts for c in clients) - posts  # type: ignore[attr-defined]
                log(f"d {spec.label}: {describe(res)}; {polls} GETs, {posts} POSTs")
            finally:
                for client in clients:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.close(), 2)
        rows.append({"server": spec.label, "result": res, "polls": polls, "posts": posts})
    base = next((r for r in rows if r["server"] == BASELINE), None)
    out = []
    for r in rows:
        res = r["result"]
        out.append(
            [
                r["server"],
                fmt(res.p(50), 2),
                fmt(res.p(99), 2),
                ratio(res.p(99), base and base["result"].p(99)),
                f"{res.acked:,}/{res.sent:,}",
                f"{r['polls'] / cfg.duration_d:,.0f}",
                f"{r['posts'] / cfg.duration_d:,.0f}",
                fmt(res.cpu.srv_pct if res.cpu else None, 0),
                fmt(res.cpu.gen_pct if res.cpu else None, 0),
                fmt(res.cpu.db_pct if res.cpu else None, 0),
                res.cpu.other if res.cpu else "-",
            ]
        )
    text = table(
        f"Scenario d: long-polling clients, ack latency at {cfg.rate_d:g} msgs/s over "
        f"{cfg.connections_d} connections",
        [
            "server",
            "ack p50 ms",
            "ack p99 ms",
            "p99 vs bare",
            "acked/sent",
            "GET/s",
            "POST/s",
            "srv CPU%",
            "gen CPU%",
            "PG+Redis CPU%",
            "foreign CPU%",
        ],
        out,
    )
    summary = [
        {"server": r["server"], "polls": r["polls"], "posts": r["posts"], **summarise(r["result"])}
        for r in rows
    ]
    return {"rows": summary, "table": text}


# -- main --------------------------------------------------------------------------------------

# -- scenario e --------------------------------------------------------------------------------


async def scenario_e(cfg: Config) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for spec in cfg.pick(SQLITE, POSTGRES, BARE):
        async with measured(cfg, spec) as target, new_http() as http:
            await validate(target, http, polling=False)
            result = await storm(
                http,
                target,
                cfg.storm_visitors,
                on_drop=lambda: start_profiler(cfg, target, "e", 10.0),
            )
            abort_all(result.clients)
        rows.append({"server": spec.label, "result": result})
        log(f"e {spec.label}: {describe_storm(result)}")
    if "redis" in cfg.servers:
        async with measured(cfg, TWO_PROCESSES) as target, new_http() as http:
            await validate(target, http, polling=False)
            result = await kill_storm(http, target, cfg.storm_visitors)
            abort_all(result.clients)
        label = TWO_PROCESSES.label + ": process 0 killed, its visitors move to process 1"
        rows.append({"server": label, "result": result})
        log(f"e {label}: {describe_storm(result)}")
    base = next((r["result"] for r in rows if r["server"] == BASELINE), None)
    out = []
    for r in rows:
        res = r["result"]
        out.append(
            [
                r["server"],
                f"{res.visitors:,}",
                f"{res.back:,}",
                fmt(res.seconds, 1),
                ratio(res.seconds, base and base.seconds),
                fmt(percentile(res.handshakes, 50), 0),
                fmt(percentile(res.handshakes, 99), 0),
                str(res.failed_attempts),
                str(res.failures),
                f"{res.synced_messages:,}",
                fmt(res.srv_cpu, 0),
                fmt(res.gen_cpu, 0),
                fmt(res.db_cpu, 0),
                res.other,
            ]
        )
    text = table(
        f"Scenario e: reconnect storm: {cfg.storm_visitors:,} visitors with tokens (every second "
        "one with a stored conversation) drop at once and reconnect with socket.io-client's "
        "backoff (first attempt 0.5-1.5 s after the drop, then 2 s, 4 s, 5 s +-50 %), each "
        "syncing from its last seq; all servers on core 0 (the two processes share it)",
        [
            "server",
            "visitors",
            "back",
            "all back+synced s",
            "vs bare",
            "handshake p50 ms",
            "p99 ms",
            "failed attempts",
            "never back",
            "messages synced",
            "srv CPU%",
            "gen CPU%",
            "PG+Redis CPU%",
            "foreign CPU%",
        ],
        out,
    )
    return {"rows": [{"server": r["server"], **r["result"].summary()} for r in rows], "table": text}


def describe_storm(res: Any) -> str:
    return (
        f"{res.back:,}/{res.visitors:,} back and synced in {res.seconds:.1f} s, handshake p50 "
        f"{percentile(res.handshakes, 50):.0f} ms p99 {percentile(res.handshakes, 99):.0f} ms, "
        f"{res.failed_attempts} failed attempts {res.attempt_errors}, server CPU "
        f"{res.srv_cpu:.0f}%, generator CPU {res.gen_cpu:.0f}%, {res.other}"
    )


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "e": scenario_e}


async def main_async(args: argparse.Namespace) -> int:
    servers = frozenset(k.strip() for k in args.servers.split(",") if k.strip())
    unknown = servers - set(SERVER_KEYS)
    if unknown:
        raise SystemExit(f"--servers: unknown {sorted(unknown)}; choose from {SERVER_KEYS}")
    profile = Path(args.profile) if args.profile else None
    cfg = Config.make(args.quick, profile, args.wait_quiet, servers)
    note = harness.prepare_generator()
    started = time.monotonic()
    header = (
        f"socketsvc bench {time.strftime('%Y-%m-%d %H:%M %Z')} on {platform.node()}: "
        f"{os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {node_version()}, servers on core "
        f"{harness.SERVER_CORE}, {note}, socketsvc sources sha256 "
        f"{harness.source_fingerprint()}{', QUICK' if cfg.quick else ''}"
    )
    log(header)
    results: dict[str, Any] = {"header": header, "validation": await validate_all()}
    names = "abcde" if args.scenario == "all" else args.scenario
    tables = []
    for name in names:
        log(f"scenario {name} ...")
        t0 = time.monotonic()
        results[name] = await SCENARIOS[name](cfg)
        log(f"scenario {name} took {time.monotonic() - t0:.0f} s")
        tables.append(results[name]["table"])
        print("\n" + results[name]["table"] + "\n", flush=True)
    print("=" * 100)
    print(header)
    for text in tables:
        print("\n" + text)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        await asyncio.to_thread(
            Path(args.json).write_text, json.dumps(results, indent=2, default=str)
        )
        log(f"results written to {args.json}")
    return 0


def node_version() -> str:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10)
        return f"Node {out.stdout.strip()}"
    except OSError:
        return "Node missing"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="all", choices=["a", "b", "c", "d", "e", "all"])
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts, short steps")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record socketsvc (raw collapsed stacks into DIR) during the first 5 s of "
        "scenario a's ramp and scenario b's fixed-rate phase; summarise with "
        "bench/pyspy_summary.py",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--servers",
        default=",".join(SERVER_KEYS),
        help="comma-separated subset of " + ",".join(SERVER_KEYS) + " (the bare baseline "
        "always runs; default: all)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=60.0,
        metavar="S",
        help="before each server, wait up to S s for other processes to leave the cores idle "
        "(default 60; 0: don't wait)",
    )
    args = parser.parse_args()
    return harness.run_bench(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
