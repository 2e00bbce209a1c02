"""Server CPU per message at fixed rates: the figure to watch while optimising the hot path.

    .venv/bin/python bench/cost.py [--servers sqlite,postgres,bare] [--rates 1000,2500]
                                   [--duration 5] [--profile DIR]

Scenario b's set-up (100 WebSocket visitors sending to their stored ack, servers on core 0, the
generator on core 1), but instead of searching for the maximum it holds each offered rate for
`--duration` s and prints, per server and rate: ack p50/p99, server CPU ms per message (the work
left after the acks included) and PostgreSQL+Redis CPU ms per message. The maximum of
`bench/run.py` follows from the CPU per message at high rates, and this figure moves much less
between runs. `--profile DIR` records socketsvc with py-spy during the highest rate
(summarise with bench/pyspy_summary.py).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from harness import (
    CpuWindow,
    Spec,
    abort_all,
    fmt,
    launch,
    log,
    new_http,
    open_clients,
    run_bench,
    run_rate,
    settle,
    start_py_spy,
    table,
    validate,
    wait_quiet,
)

SPECS = {
    "sqlite": Spec("socketsvc SQLite", "socketsvc", "sqlite"),
    "handoff": Spec("socketsvc SQLite, handed off", "socketsvc", "sqlite", handoff=True),
    "postgres": Spec("socketsvc PostgreSQL", "socketsvc", "postgres"),
    "bare": Spec("bare python-socketio", "bare"),
    "node": Spec("Node socket.io 4.8", "node"),
}


async def batches(http: Any, url: str) -> float:
    """socketsvc's `socketsvc_append_batches_total` (0 for the other servers)."""
    async with http.get(f"{url}/metrics") as response:
        if response.status != 200:
            return 0.0
        text = await response.text()
    match = re.search(r"^socketsvc_append_batches_total ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def main_async(args: argparse.Namespace) -> int:
    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    for key in args.servers.split(","):
        spec = SPECS[key]
        note = await wait_quiet(args.wait_quiet)
        if note:
            log(f"{spec.label}: machine {note}")
        async with launch(spec) as target, new_http() as http:
            await validate(target, http, polling=False)
            ramp = await open_clients(http, target.visitor_url, 100, concurrency=100)
            clients = ramp.clients
            try:
                if spec.handoff:
                    for client in clients:
                        await client.call("handoff", {"reason": "benchmark"})
                await run_rate(clients, 200.0, 1.0, prefix="w")
                await settle(clients, target.pids)
                for i, rate in enumerate(rates):
                    profiler = None
                    if args.profile and spec.kind == "socketsvc" and i == len(rates) - 1:
                        profiler = start_py_spy(
                            args.profile, "cost", spec.label, target.pids[0], args.duration
                        )
                    before = await batches(http, target.visitor_url)
                    whole = CpuWindow(target.pids)
                    res = await run_rate(
                        clients, rate, args.duration, pids=target.pids, prefix=f"r{i}-"
                    )
                    if profiler is not None:
                        profiler.wait(timeout=60)
                    await settle(clients, target.pids)
                    whole.stop()
                    rounds = await batches(http, target.visitor_url) - before
                    acked = max(1, res.acked)
                    cpu_ms = 1000.0 * whole.srv_seconds / acked
                    db_ms = 1000.0 * whole.db_seconds / acked
                    cpu = res.cpu
                    rows.append(
                        [
                            spec.label,
                            fmt(rate, 0),
                            fmt(res.p(50), 2),
                            fmt(res.p(99), 2),
                            f"{res.acked:,}/{res.sent:,}",
                            fmt(res.acked / rounds, 1) if rounds else "-",
                            fmt(cpu_ms, 3),
                            fmt(db_ms, 3),
                            fmt(cpu.srv_pct, 0) if cpu else "-",
                            fmt(cpu.gen_pct, 0) if cpu else "-",
                            cpu.other if cpu else "-",
                        ]
                    )
                    log(" | ".join(rows[-1]))
            finally:
                abort_all(clients)
    print(
        table(
            f"Server CPU per message, 100 WebSocket visitors, {args.duration:g} s per rate",
            [
                "server",
                "offered/s",
                "p50 ms",
                "p99 ms",
                "acked/sent",
                "msgs/commit",
                "srv CPU ms/msg",
                "PG+Redis ms/msg",
                "srv CPU%",
                "gen CPU%",
                "foreign CPU%",
            ],
            rows,
        )
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="sqlite,postgres,bare", help=",".join(SPECS))
    parser.add_argument("--rates", default="1000,2500")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--wait-quiet", type=float, default=10.0)
    return run_bench(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
