"""Soak: 10,000 concurrent /chat visitors held by one socketsvc process.

    .venv/bin/python bench/soak.py [--duration 600] [--connections 10000] [--interval 30]
                                   [--database sqlite|postgres] [--rate 0]

socketsvc runs on core 0 (SQLite in a temp file, or a fresh PostgreSQL database); this load
generator runs on core 1 and ramps the visitors (200 handshakes in flight), each waiting for its
`session`, then holds them for --duration seconds, answering every Engine.IO ping. Every
--interval seconds it prints: connections still up, disconnects, heartbeat lateness (how much
later than pingInterval each server ping arrived after the previous one, or after the handshake
for the first), the server's RSS and CPU%, and the generator's own CPU% and event-loop lag (so a
late heartbeat that is the generator's fault is visible). At the end: RSS growth since the end of
the ramp.

Acceptance (exit status 0): no disconnects, heartbeats on time (p99 lateness under 1 s and no
gap between pings longer than pingInterval + pingTimeout, when the client would give up), RSS
growth after the ramp under 5 %.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from typing import Any

import harness
from harness import (
    CpuWindow,
    Spec,
    abort_all,
    fmt,
    launch,
    log,
    new_http,
    open_clients,
    percentile,
    table,
    wait_quiet,
)
from lean_client import BaseSocket

LATE_P99_LIMIT = 1.0
RSS_GROWTH_LIMIT = 5.0


class Heartbeats:
    """Ping arrival gaps of every connection, per reporting window and overall."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        self.window: list[float] = []
        self.all: list[float] = []
        self.max_gap = 0.0
        self.disconnects = 0
        self.holding = False
        self.interval = 25.0
        self.timeout = 20.0

    def on_ping(self, sock: BaseSocket, now: float) -> None:
        previous = self.last.get(id(sock), sock.opened_at)
        self.last[id(sock)] = now
        gap = now - previous
        self.interval, self.timeout = sock.ping_interval, sock.ping_timeout
        lateness = gap - sock.ping_interval
        self.window.append(lateness)
        self.all.append(lateness)
        self.max_gap = max(self.max_gap, gap)

    def on_close(self, sock: BaseSocket) -> None:
        if self.holding:
            self.disconnects += 1


async def loop_lag(samples: list[float], period: float = 0.1) -> None:
    """How late this process's event loop wakes up (the generator's own health), ms."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(period)
        samples.append((time.monotonic() - started - period) * 1000.0)


async def soak(args: argparse.Namespace) -> int:
    note = harness.prepare_generator()
    log(f"soak: {args.connections:,} visitors for {args.duration:g} s ({note})")
    quiet = await wait_quiet(args.wait_quiet)
    if quiet:
        log(f"machine {quiet}")
    env: tuple[tuple[str, str], ...] = ()
    if args.ping_interval:
        env = (("PING_INTERVAL", str(args.ping_interval)),)
    spec = Spec(
        f"socketsvc {args.database}", "socketsvc", args.database, env=env, gc_probe=args.gc_probe
    )
    beats = Heartbeats()
    lag: list[float] = []
    lag_task = asyncio.create_task(loop_lag(lag))
    rows: list[list[str]] = []
    clients: list[BaseSocket] = []
    async with launch(spec) as target, new_http() as http:
        base_rss = target.rss_kib()
        ramp = await open_clients(
            http,
            target.visitor_url,
            args.connections,
            concurrency=args.concurrency,
            on_ping=beats.on_ping,
            on_close=beats.on_close,
            pids=target.pids,
        )
        clients = ramp.clients
        beats.holding = True
        # The generator holds 10,000 connections too: move them out of its own cyclic GC, or
        # its full collections (~1 s) would show up as late heartbeats.
        gc.collect()
        gc.freeze()
        log(
            f"ramp: {len(clients):,} connected, {sum(ramp.failures.values())} failed "
            f"{dict(ramp.failures) or ''} in {ramp.elapsed:.1f} s ({ramp.rate:,.0f} handshakes/s); "
            f"server CPU {ramp.cpu.srv_pct:.0f}%, generator CPU {ramp.cpu.gen_pct:.0f}%"
        )
        await asyncio.sleep(5.0)
        ramp_rss = target.rss_kib()
        log(
            f"after the ramp: RSS {ramp_rss / 1024:.1f} MiB (before: {base_rss / 1024:.1f} MiB, "
            f"{(ramp_rss - base_rss) / max(1, len(clients)):.1f} KiB/connection)"
        )
        traffic = asyncio.create_task(background_traffic(clients, args.rate)) if args.rate else None
        started = time.monotonic()
        elapsed = 0.0
        while elapsed < args.duration:
            window = CpuWindow(target.pids)
            beats.window = []
            lag.clear()
            wait = min(args.interval, args.duration - elapsed)
            await asyncio.sleep(wait)
            window.stop()
            elapsed = time.monotonic() - started
            connected = sum(1 for c in clients if not c.closed)
            rss = target.rss_kib()
            row = [
                f"{elapsed:.0f}",
                f"{connected:,}",
                str(beats.disconnects),
                f"{len(beats.window):,}",
                fmt(percentile(beats.window, 50) * 1000, 0),
                fmt(percentile(beats.window, 99) * 1000, 0),
                fmt(max(beats.window, default=float("nan")) * 1000, 0),
                fmt(rss / 1024, 1),
                fmt(100.0 * (rss - ramp_rss) / ramp_rss, 2),
                fmt(window.srv_pct, 0),
                fmt(window.gen_pct, 0),
                fmt(percentile(lag, 99), 1),
                window.other,
            ]
            rows.append(row)
            log(
                f"t={row[0]} s: {row[1]} connected, {row[2]} disconnects, {row[3]} pings, "
                f"lateness p50/p99/max {row[4]}/{row[5]}/{row[6]} ms (interval "
                f"{beats.interval:g} s), RSS {row[7]} MiB ({row[8]} %), server CPU {row[9]}%, "
                f"generator CPU {row[10]}% loop lag p99 {row[11]} ms, foreign CPU {row[12]}%"
            )
        if traffic is not None:
            traffic.cancel()
        end_rss = target.rss_kib()
        connected = sum(1 for c in clients if not c.closed)
        gc_pauses = list(target.servers[0].gc_pauses)
        abort_all(clients)
    lag_task.cancel()
    growth = 100.0 * (end_rss - ramp_rss) / ramp_rss
    late_p99 = percentile(beats.all, 99)
    on_time = late_p99 < LATE_P99_LIMIT and beats.max_gap < beats.interval + beats.timeout
    checks = [
        (
            "no disconnects",
            beats.disconnects == 0 and connected == args.connections,
            f"{beats.disconnects} disconnects, {connected:,}/{args.connections:,} connected "
            "at the end",
        ),
        (
            "heartbeats on time",
            on_time,
            f"lateness p99 {late_p99 * 1000:.0f} ms (limit {LATE_P99_LIMIT * 1000:.0f} ms), "
            f"max gap {beats.max_gap:.2f} s vs interval {beats.interval:g} s + timeout "
            f"{beats.timeout:g} s, {len(beats.all):,} pings",
        ),
        (
            "RSS growth < 5 %",
            growth < RSS_GROWTH_LIMIT,
            f"{ramp_rss / 1024:.1f} -> {end_rss / 1024:.1f} MiB: {growth:+.2f} %",
        ),
    ]
    print()
    print(
        table(
            f"Soak: {args.connections:,} /chat visitors on one socketsvc process "
            f"({args.database}), {args.duration:g} s, report every {args.interval:g} s",
            [
                "t s",
                "connected",
                "disconnects",
                "pings",
                "late p50 ms",
                "late p99 ms",
                "late max ms",
                "RSS MiB",
                "RSS vs ramp %",
                "srv CPU%",
                "gen CPU%",
                "gen loop lag p99 ms",
                "foreign CPU%",
            ],
            rows,
        )
    )
    print()
    for check, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {check}: {detail}")
    if args.gc_probe:
        print(f"\nslow GC collections in socketsvc (>= 20 ms), ramp and hold: {len(gc_pauses)}")
        by_generation: dict[str, list[float]] = {}
        for line in gc_pauses:
            words = line.split()
            by_generation.setdefault(words[2], []).append(float(words[4]))
        for generation, pauses in sorted(by_generation.items()):
            print(
                f"  generation {generation}: {len(pauses)} collections, max {max(pauses):.0f} ms, "
                f"total {sum(pauses) / 1000:.1f} s"
            )
        for line in gc_pauses:
            if " generation 2 " in line:
                print("  " + line)
    return 0 if all(ok for _, ok, _ in checks) else 1


async def background_traffic(clients: list[BaseSocket], rate: float) -> None:
    """Optional: `rate` visitor messages/s spread over the held connections."""
    sent = 0
    started = time.monotonic()

    def ignore(_: Any) -> None:
        return None

    while True:
        due = int((time.monotonic() - started) * rate)
        while sent < due:
            client = clients[sent % len(clients)]
            if not client.closed:
                client.emit("message", {"client_id": f"soak{sent}", "text": harness.TEXT}, ignore)
            sent += 1
        await asyncio.sleep(0.01)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to hold (600)")
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between reports")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight")
    parser.add_argument("--rate", type=float, default=0.0, help="background msgs/s (default 0)")
    parser.add_argument(
        "--ping-interval", type=float, default=0.0, help="PING_INTERVAL for socketsvc (default 25)"
    )
    parser.add_argument("--wait-quiet", type=float, default=60.0, metavar="S")
    parser.add_argument(
        "--gc-probe",
        action="store_true",
        help="start socketsvc through bench/gc_probe.py and list its slow GC collections",
    )
    args = parser.parse_args()
    return harness.run_bench(soak(args))


if __name__ == "__main__":
    sys.exit(main())
