"""Are the dependency patches worth keeping? Stock against patched, in one run.

    .venv/bin/python bench/patches.py [--connections 2000] [--rate 1000] [--duration 5]
                                      [--rounds 3] [--variants stock,handler,patched]

Measures the two performance patches of socketsvc/transport/patches (the bug fixes and
hardening patches stay whatever they cost, and are on in every variant):

  stock    python-engineio's own `AsyncSocket.poll` / `_websocket_handler` (a task per wait),
           one `ws.send()` per frame
  handler  + `engineio.websocket_handler` (LeanSocket: the waits without a task each)
  patched  + `aiohttp.write_batch` (the frames of one batch in one `transport.write`)

Each variant is a small server process built here (`--serve VARIANT`): `SocketServer` with that
set of patches (`applied=`) and socketsvc's `LeanManager`, a `/chat` namespace that sends
`session` on connect and answers `message` with a push of the message to the sender plus the
ack (two frames, as socketsvc's stored message), no storage. The server runs on core 0
(``taskset -c 0``), this load generator on core 1 (`os.sched_setaffinity`), and it says so. The
variants are run in turn, `--rounds` times (stock, handler, patched, stock, ...), so that a drift
of the machine hits all of them.

Per variant and round:
  memory   server RSS growth per idle WebSocket connection, KiB, over `--connections`
  cpu      server CPU ms per message at `--rate` msgs/s over 100 of those connections
           (`--duration` s; the other connections stay open and idle), ack p50 / p99 ms
  writes   the server's write system calls per message (`strace -c -f`, in a 2 s phase at a
           fifth of the rate after the timed one: strace slows what it traces)

It prints every round, then the medians over rounds with each variant's ratio to `stock`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
VARIANTS = ("stock", "handler", "patched")
PERFORMANCE_PATCHES = {
    "stock": (),
    "handler": ("engineio.websocket_handler",),
    "patched": ("engineio.websocket_handler", "aiohttp.write_batch"),
}


# -- the server (a subprocess: `bench/patches.py --serve VARIANT`) -----------------------------


def serve(variant: str, port: int) -> None:
    from aiohttp import web

    from socketsvc.transport import patches
    from socketsvc.transport.managers import LeanManager
    from socketsvc.transport.server import SocketServer

    keep = set(PERFORMANCE_PATCHES[variant])
    performance = {"engineio.websocket_handler", "aiohttp.write_batch"}
    wanted = [p for p in patches.registry() if p.name not in performance or p.name in keep]
    applied = patches.apply(wanted)
    sio = SocketServer(
        applied=applied,
        client_manager=LeanManager(),  # socketsvc's: an emit sends without a task per recipient
        async_mode="aiohttp",
        async_handlers=False,
        max_http_buffer_size=64 * 1024,
        ping_interval=25,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )
    seqs: dict[str, int] = {}

    @sio.on("connect", namespace="/chat")
    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        seqs[sid] = 0
        session = {"visitor_id": uuid.uuid4().hex, "last_seq": 0}
        sio.start_background_task(sio.emit, "session", session, to=sid, namespace="/chat")

    @sio.on("disconnect", namespace="/chat")
    async def disconnect(sid: str, reason: Any = None) -> None:
        seqs.pop(sid, None)

    @sio.on("message", namespace="/chat")
    async def message(sid: str, data: Any = None) -> dict[str, Any]:
        seqs[sid] = seq = seqs.get(sid, 0) + 1
        text = data.get("text") if isinstance(data, dict) else None
        stored = {"id": uuid.uuid4().hex, "seq": seq, "text": text}
        await sio.emit("message", stored, to=sid, namespace="/chat")
        return {"ok": True, "message": stored}

    app = web.Application()
    sio.attach(app)

    async def started(app: web.Application) -> None:
        names = ", ".join(sorted(applied.names))
        print(f"patches bench server ({variant}): {names}", file=sys.stderr, flush=True)

    app.on_startup.append(started)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        print=lambda _: print(f"listening on http://127.0.0.1:{port}", file=sys.stderr),
        access_log=None,
    )


# -- the load generator ---------------------------------------------------------------------


@dataclass
class Figures:
    kib_per_connection: list[float] = field(default_factory=list)
    ms_per_message: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    writes_per_message: list[float] = field(default_factory=list)


WRITE_CALLS = ("write", "writev", "send", "sendto", "sendmsg")


def start_strace(pid: int, output: Path) -> subprocess.Popen[bytes] | None:
    """`strace -c` of the server's write system calls (None when strace is missing)."""
    try:
        argv = ["strace", "-f", "-c", "-e", "trace=" + ",".join(WRITE_CALLS), "-o", str(output)]
        proc = subprocess.Popen(
            [*argv, "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    time.sleep(0.5)  # attached (to every thread) before the phase starts
    return proc


def stop_strace(proc: subprocess.Popen[bytes] | None, output: Path) -> int | None:
    """Detach and return the number of write system calls counted."""
    if proc is None:
        return None
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    calls = 0
    for line in output.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in WRITE_CALLS and fields[3].isdigit():
            calls += int(fields[3])
    output.unlink(missing_ok=True)
    return calls


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def one_round(variant: str, args: argparse.Namespace, figures: Figures) -> None:
    import harness
    from harness import (
        CpuWindow,
        Server,
        abort_all,
        log,
        new_http,
        open_clients,
        percentile,
        proc_rss_kib,
        run_rate,
        settle,
    )

    note = await harness.wait_quiet(args.wait_quiet)
    port = free_port()
    server = Server(
        f"patches-{variant}",
        [harness.PYTHON, str(SCRIPT), "--serve", variant, "--port", str(port)],
        {"PYTHONPATH": str(ROOT)},
        ROOT,
    )
    server.start()
    try:
        async with new_http() as http:
            warm = await open_clients(http, server.url, 50, pids=[server.pid])
            await run_rate(warm.clients, 200.0, 1.0, pids=[server.pid], prefix="w")
            await settle(warm.clients, [server.pid])
            await asyncio.sleep(1.0)
            before = proc_rss_kib(server.pid)
            ramp = await open_clients(
                http, server.url, args.connections, pids=[server.pid], start_index=50
            )
            if ramp.failures:
                log(f"{variant}: connection failures {dict(ramp.failures)}")
            await settle(ramp.clients, [server.pid])
            await asyncio.sleep(2.0)
            after = proc_rss_kib(server.pid)
            per_connection = (after - before) / max(1, len(ramp.clients))
            senders = ramp.clients[:100]
            result = await run_rate(senders, args.rate, args.duration, pids=[server.pid])
            result.tail = await settle(senders, [server.pid])
            # Then a short phase under strace (which slows the server: not timed) for the
            # number of write system calls per message.
            output = Path(tempfile.mkstemp(prefix="patches-strace-")[1])
            tracer = start_strace(server.pid, output)
            traced = await run_rate(senders, args.rate / 5, 2.0, prefix="s")
            await settle(senders)
            calls = stop_strace(tracer, output)
            per_message = calls / max(1, traced.acked) if calls is not None else float("nan")
            figures.writes_per_message.append(per_message)
            cpu = result.cpu or CpuWindow([])
            ms = 1000.0 * cpu.srv_seconds / max(1, result.acked)
            figures.kib_per_connection.append(per_connection)
            figures.ms_per_message.append(ms)
            p50, p99 = percentile(result.latencies, 50), percentile(result.latencies, 99)
            figures.p50.append(p50)
            figures.p99.append(p99)
            log(
                f"{variant:8s} RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB over "
                f"{len(ramp.clients)} idle connections = {per_connection:.2f} KiB each | "
                f"{result.acked}/{result.sent} acked at {args.rate:.0f}/s: server CPU "
                f"{cpu.srv_pct:.0f}% = {ms:.4f} ms/msg, {per_message:.2f} write syscalls/msg, "
                f"ack p50 {p50:.2f} p99 {p99:.2f} ms, "
                f"generator {cpu.gen_pct:.0f}%, {cpu.foreign_note}"
                + (f" [{note}]" if note and note != "quiet" else "")
            )
            abort_all(warm.clients)
            abort_all(ramp.clients)
    finally:
        server.stop()


async def bench(args: argparse.Namespace) -> int:
    import harness
    from harness import log, table

    log(harness.prepare_generator())
    log(
        f"servers pinned to core {harness.SERVER_CORE} (taskset -c {harness.SERVER_CORE}), "
        f"this load generator (pid {os.getpid()}) to core {harness.CLIENT_CORE} "
        f"(os.sched_setaffinity): {sorted(os.sched_getaffinity(0))}"
    )
    variants = [v for v in args.variants.split(",") if v]
    figures = {v: Figures() for v in variants}
    for round_ in range(1, args.rounds + 1):
        log(f"round {round_}/{args.rounds}")
        for variant in variants:
            await one_round(variant, args, figures[variant])

    base = figures.get("stock")

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def ratio(value: float, of: list[float] | None) -> str:
        return harness.ratio(value, median(of)) if of else "-"

    rows = []
    for variant in variants:
        f = figures[variant]
        rows.append(
            [
                variant,
                f"{median(f.kib_per_connection):.2f}",
                ratio(median(f.kib_per_connection), base.kib_per_connection if base else None),
                " / ".join(f"{v:.2f}" for v in f.kib_per_connection),
                f"{median(f.ms_per_message):.4f}",
                ratio(median(f.ms_per_message), base.ms_per_message if base else None),
                " / ".join(f"{v:.4f}" for v in f.ms_per_message),
                f"{median(f.writes_per_message):.2f}",
                f"{median(f.p50):.2f} / {median(f.p99):.2f}",
            ]
        )
    print()
    print(
        table(
            f"medians over {args.rounds} rounds ({args.connections} idle connections; "
            f"{args.rate:.0f} msgs/s for {args.duration:.0f} s over 100 of them)",
            [
                "variant",
                "KiB/conn",
                "vs stock",
                "rounds",
                "CPU ms/msg",
                "vs stock",
                "rounds",
                "writes/msg",
                "ack p50 / p99 ms",
            ],
            rows,
        )
    )
    print(json.dumps({v: figures[v].__dict__ for v in variants}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--wait-quiet", type=float, default=10.0)
    args = parser.parse_args()
    if args.serve:
        logging.basicConfig(level=logging.WARNING)
        serve(args.serve, args.port)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import harness

    return harness.run_bench(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
