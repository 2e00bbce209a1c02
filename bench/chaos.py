"""Chaos bench: many processes behind nginx, nothing lost under faults, for longer.

Runs, each on a fresh cluster (a dedicated redis-server, N `python -m socketsvc` processes and a
real nginx with `hash $remote_addr consistent`, from tests/support/cluster.py) and a fresh crowd
(visitors and agents from tests/support/chaos_clients.py, each on its own 127.0.0.x address,
every visitor handed off and accepted, messages both ways every 0.5-1 s):

    kill      kill -9 of process 0 a third of the way in; it is started again at two thirds
    redis     Redis stopped for --redis-outage seconds a third of the way in, then started
    rolling   a third of the way in: SIGTERM, restart and wait-ready of each process in turn

then stops the traffic, lets every participant resync, and audits against PostgreSQL: sent,
acked, stored, delivered (to visitor AND agent), lost, duplicated; with readiness recovery
time, exit times and reconnect p50/p99. Exit code 1 if anything was lost or duplicated.

    createdb -h 127.0.0.1 -U postgres socketsvc_bench
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/socketsvc_bench \\
        .venv/bin/python bench/chaos.py --duration 60

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.chaos_clients import Audit, Crowd, audit, percentile  # noqa: E402
from tests.support.cluster import Cluster, environment_problem  # noqa: E402

SCENARIOS = ("kill", "redis", "rolling")


@dataclass
class Outcome:
    scenario: str
    audit: Audit | None = None
    reconnects: list[float] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.audit is not None and self.audit.ok

    def line(self) -> str:
        if self.audit is None:
            return f"[{self.scenario}] FAILED: {self.error}"
        facts = " ".join(f"{k}={v}" for k, v in self.facts.items())
        status = "ok" if self.ok else f"FAILED {self.error or self.audit.summary()}"
        return (
            f"[{self.scenario}] {self.audit.line()} | reconnects={len(self.reconnects)} "
            f"p50={percentile(self.reconnects, 50):.2f}s "
            f"p99={percentile(self.reconnects, 99):.2f}s | {facts} | {status}"
        )


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


async def split(cluster: Cluster) -> str:
    parts = []
    for i in range(cluster.count):
        if not cluster.alive(i):
            parts.append(f"p{i}: down")
            continue
        counts = await cluster.connections(i)
        parts.append(f"p{i}: {counts['/chat']}v+{counts['/agent']}a")
    return " ".join(parts)


async def until(start: float, offset: float) -> None:
    await asyncio.sleep(max(0.0, start + offset - time.monotonic()))


async def fault_kill(
    cluster: Cluster, crowd: Crowd, args: argparse.Namespace, out: Outcome
) -> None:
    start = time.monotonic()
    await until(start, args.duration / 3)
    await cluster.kill(0)
    log("kill -9 process 0")
    await until(start, 2 * args.duration / 3)
    out.facts["restart_ready_s"] = f"{await cluster.start(0):.2f}"
    log(f"process 0 started again, ready in {out.facts['restart_ready_s']} s")
    await until(start, args.duration)


async def fault_redis(
    cluster: Cluster, crowd: Crowd, args: argparse.Namespace, out: Outcome
) -> None:
    start = time.monotonic()
    await until(start, args.duration / 3)
    await cluster.redis_stop()
    down_at = time.monotonic()
    log(f"Redis stopped for {args.redis_outage} s")
    unready: set[int] = set()
    while time.monotonic() < down_at + args.redis_outage:
        for i in range(cluster.count):
            if (await cluster.ready(i))[0] == 503:
                unready.add(i)
        await asyncio.sleep(0.25)
    out.facts["readyz_503_during_outage"] = f"{len(unready)}/{cluster.count}"
    await cluster.redis_start()
    up_at = time.monotonic()
    recovery = await asyncio.gather(*(cluster.wait_ready(i, 30) for i in range(cluster.count)))
    out.facts["readiness_recovery_s"] = "/".join(f"{s:.2f}" for s in recovery)
    log(f"Redis started; /readyz 200 again after {out.facts['readiness_recovery_s']} s")
    await asyncio.sleep(5)
    live, total = crowd.live_since(up_at + max(recovery))
    out.facts["live_after_recovery"] = f"{live}/{total}"
    if live != total:
        out.error = f"only {live}/{total} conversations got live messages after the outage"
    await until(start, args.duration)


async def fault_rolling(
    cluster: Cluster, crowd: Crowd, args: argparse.Namespace, out: Outcome
) -> None:
    start = time.monotonic()
    await until(start, args.duration / 3)
    exits = []
    for i in range(cluster.count):
        code, seconds = await cluster.stop(i)
        ready = await cluster.start(i)
        exits.append(f"{code}@{seconds:.2f}s")
        log(f"process {i}: SIGTERM -> exit {code} in {seconds:.2f} s, ready again in {ready:.2f} s")
        if code != 0 or seconds >= 10:
            out.error = f"process {i} exited with {code} after {seconds:.2f} s"
        await crowd.wait_connected(15)
        await asyncio.sleep(2)
    out.facts["exits"] = ",".join(exits)
    await until(start, args.duration)


FAULTS = {"kill": fault_kill, "redis": fault_redis, "rolling": fault_rolling}


async def run(scenario: str, args: argparse.Namespace, workdir: Path) -> Outcome:
    out = Outcome(scenario)
    env = {"AGENT_GRACE_SECONDS": str(args.grace)}
    tag = f"{scenario}-{uuid.uuid4().hex[:6]}"
    log(
        f"== {scenario}: {args.processes} processes, {args.visitors} visitors, {args.agents} agents"
    )
    async with Cluster(args.database_url, workdir / scenario, args.processes, env) as cluster:
        crowd = Crowd(cluster.url, visitors=args.visitors, agents=args.agents, tag=tag)
        try:
            took = await crowd.start(timeout=120)
            log(f"crowd ready in {took:.1f} s; split {await split(cluster)}")
            crowd.start_traffic()
            await FAULTS[scenario](cluster, crowd, args, out)
            log(f"split {await split(cluster)}; stopping traffic")
            if not await crowd.wait_connected(30):
                out.error = "some participants never reconnected"
            await crowd.stop_traffic()
            if not await crowd.resync(60):
                out.error = "some participants could not resync"
            out.audit = await audit(args.database_url, crowd)
            out.reconnects = crowd.reconnect_times()
            counters = crowd.counters()
            out.facts["resends"] = counters["resends"]
            if counters["errors"]:
                out.facts["errors"] = counters["errors"]
        except Exception as exc:  # report and go on with the next scenario
            out.error = f"{type(exc).__name__}: {exc}"
        finally:
            await crowd.close()
    log(out.line())
    return out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=50)
    parser.add_argument("--agents", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60.0, help="traffic seconds per fault")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated: {','.join(SCENARIOS)}"
    )
    parser.add_argument("--redis-outage", type=float, default=5.0, help="seconds Redis is down")
    parser.add_argument(
        "--grace", type=float, default=60.0, help="AGENT_GRACE_SECONDS of the processes"
    )
    parser.add_argument("--workdir", type=Path, help="keep logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    args.database_url = os.environ.get("DATABASE_URL", "")
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("set DATABASE_URL=postgresql://... (create the database first, see README)")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.agents < 1 or args.visitors < 1 or args.processes < 1:
        parser.error("--visitors, --agents and --processes must be at least 1")
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    problem = environment_problem()
    if problem:
        print(f"chaos bench: {problem}", file=sys.stderr)
        return 2
    # python-socketio/engineio clients log every dropped connection; the audit says what matters
    for name in ("engineio", "socketio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="socketsvc-chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        outcomes = [await run(scenario, args, workdir) for scenario in args.scenarios]
    print("\nsummary")
    for outcome in outcomes:
        print(outcome.line())
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
