"""GC churn: does socketsvc's GC policy (socketsvc/runtime/gcpolicy.py) keep memory bounded when
connections come and go?

    flock /tmp/socketsvc-bench.lock .venv/bin/python bench/gc_churn.py \\
        [--hold 2000] [--churn 1000] [--rounds 20] [--linger 3] \\
        [--freeze-interval 1] [--full-growth 25]      # GC_FREEZE_INTERVAL, GC_FULL_GROWTH

socketsvc (SQLite in a temp dir, silent bot) runs on core 0, this generator on core 1. It
connects --hold visitors and keeps them, then for each of --rounds rounds connects --churn new
visitors, keeps them --linger s (longer than the freeze interval, so each of them is frozen
while open) and drops them. After each round (and once more --linger s after the last) it asks
the server for a sample (SIGUSR1: `gc.get_freeze_count()`, `len(gc.get_objects())`,
`sys.getallocatedblocks()`) and prints it with the server's RSS, the policy's full steps so far
and its slowest freeze and full steps (its log lines, shown at DEBUG), and the number of
collections of 20 ms or more (a `gc` callback; the policy's own steps included).
`--freeze-interval 0` runs CPython's default collector for comparison; `--full-growth 1000`
shows what freezing without the full-collection bound leaks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import BENCH, LIMITS, PYTHON, SECRET, Server, abort_all, log, new_http, open_clients

STEP = re.compile(r"gc (\w+) step: (\d+) unreachable, (\d+) memory blocks .*?, (\d+) ms")
STATS = re.compile(r"gc-stats: frozen (\d+), unfrozen (\d+), blocks (\d+)")
PROBE = re.compile(r"gc-probe: generation (\d) took (\d+) ms")
WRAPPER = """
import gc, logging, runpy, signal, sys, time
def stats(*_):
    print(f"gc-stats: frozen {gc.get_freeze_count()}, unfrozen {len(gc.get_objects())}, "
          f"blocks {sys.getallocatedblocks()}", file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR1, stats)
began = [0.0]
def probe(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
    elif time.perf_counter() - began[0] >= 0.02:
        took = (time.perf_counter() - began[0]) * 1000
        print(f"gc-probe: generation {info['generation']} took {took:.0f} ms", file=sys.stderr)
gc.callbacks.append(probe)
logging.getLogger("socketsvc.runtime.gcpolicy").setLevel(logging.DEBUG)
sys.argv = ["socketsvc"]
runpy.run_module("socketsvc", run_name="__main__", alter_sys=True)
"""


class GcServer(Server):
    """A `Server` that keeps every GC line of its stderr (the policy's steps, gc_probe's pauses)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gc_lines: list[str] = []

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line)
            if "gc" in line:
                self.gc_lines.append(line.strip())


def summary(lines: list[str]) -> dict[str, float]:
    """The last gc-stats sample, full steps, slowest freeze and full steps, slow collections."""
    out = dict.fromkeys(
        ("frozen", "unfrozen", "blocks", "fulls", "freeze_ms", "full_ms", "slow"), 0.0
    )
    for line in lines:
        if found := STATS.search(line):
            out["frozen"], out["unfrozen"], out["blocks"] = map(float, found.groups())
        elif found := STEP.search(line):
            kind, ms = found.group(1), float(found.group(4))
            if kind == "full":
                out["fulls"] += 1
                out["full_ms"] = max(out["full_ms"], ms)
            else:
                out["freeze_ms"] = max(out["freeze_ms"], ms)
        elif PROBE.search(line):
            out["slow"] += 1
    return out


async def churn(args: argparse.Namespace) -> int:
    log(f"gc churn: {harness.prepare_generator()}")
    workdir = Path(tempfile.mkdtemp(prefix="socketsvc-churn-"))
    env = {
        "HOST": "127.0.0.1",
        "PORT": "0",
        "SOCKETSVC_SECRET": SECRET,
        "BOT": "bench_bots:noop",
        "PYTHONPATH": str(BENCH),
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": f"sqlite:///{workdir / 'churn.sqlite3'}",
        "GC_FREEZE_INTERVAL": str(args.freeze_interval),
        "GC_FULL_GROWTH": str(args.full_growth),
        **LIMITS,
    }
    server = GcServer("socketsvc", [PYTHON, "-c", WRAPPER], env, workdir)
    await asyncio.to_thread(server.start)
    print(
        f"GC churn: hold {args.hold:,}, then {args.rounds} rounds of {args.churn:,} visitors "
        f"open for {args.linger:g} s; GC_FREEZE_INTERVAL={args.freeze_interval:g} "
        f"GC_FULL_GROWTH={args.full_growth:g}",
        flush=True,
    )
    print(
        "round | t s  | RSS MiB | frozen    | unfrozen  | blocks    | full steps | "
        "max freeze step ms | max full step ms | slow (>=20 ms) collections",
        flush=True,
    )
    started = time.monotonic()
    try:
        async with new_http() as http:
            held = await open_clients(http, server.url, args.hold, pids=[server.pid])
            await asyncio.sleep(args.linger)
            await report(0, started, server)
            for round_no in range(1, args.rounds + 1):
                batch = await open_clients(
                    http, server.url, args.churn, pids=[server.pid], start_index=round_no * 10**6
                )
                await asyncio.sleep(args.linger)
                abort_all(batch.clients)
                await asyncio.sleep(1.0)
                await report(round_no, started, server)
            await asyncio.sleep(args.linger)
            await report(args.rounds + 1, started, server)
            abort_all(held.clients)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


async def report(round_no: int, started: float, server: GcServer) -> None:
    """Ask the server for a gc-stats line (SIGUSR1), then print one row."""
    seen = len(server.gc_lines)
    os.kill(server.pid, signal.SIGUSR1)
    await harness.wait_until(
        lambda: any("gc-stats:" in line for line in server.gc_lines[seen:]), 10.0, 0.05
    )
    got = summary(server.gc_lines)
    print(
        f"{round_no:5d} | {time.monotonic() - started:4.0f} | "
        f"{harness.proc_rss_kib(server.pid) / 1024:7.1f} | {got['frozen']:9,.0f} | "
        f"{got['unfrozen']:9,.0f} | {got['blocks']:9,.0f} | {got['fulls']:10.0f} | "
        f"{got['freeze_ms']:18.0f} | {got['full_ms']:16.0f} | {got['slow']:.0f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hold", type=int, default=2000, help="visitors held throughout")
    parser.add_argument("--churn", type=int, default=1000, help="visitors per round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--linger", type=float, default=3.0, help="seconds a round stays open")
    parser.add_argument("--freeze-interval", type=float, default=1.0, help="GC_FREEZE_INTERVAL")
    parser.add_argument("--full-growth", type=float, default=25.0, help="GC_FULL_GROWTH (%%)")
    args = parser.parse_args()
    return harness.run_bench(churn(args))


if __name__ == "__main__":
    sys.exit(main())
