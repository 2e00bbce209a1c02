"""What bench/run.py and bench/soak.py share: server processes pinned to core 0, /proc readings,
fresh PostgreSQL databases, connection ramps, an open-loop rate driver and table printing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from lean_client import BaseSocket, PollingClient, WebSocketClient, ack_ok

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVER_CORE = 0
CLIENT_CORE = 1
NOFILE = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
"""65536, or the hard limit when this sandbox does not let even root raise it (then 20000)."""
LIMITS = {
    # socketsvc's abuse limits, raised so that one load generator on 127.0.0.1 is not refused.
    "MESSAGE_RATE": "100000",
    "MESSAGE_BURST": "100000",
    "CONNECT_RATE": "1000000",
    "MAX_CONNECTIONS_PER_IP": "1000000",
    "MAX_CONNECTIONS": "1000000",
}
TEXT = "Hello, I have a question about my order."
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- this process -----------------------------------------------------------------------------


def prepare_generator() -> str:
    """Pin the load generator to core 1 and raise its open-file limit; returns a note."""
    notes = []
    try:
        os.sched_setaffinity(0, {CLIENT_CORE})
        notes.append(f"generator pinned to core {CLIENT_CORE}")
    except OSError as exc:  # pragma: no cover - fewer than 2 cores
        notes.append(f"generator NOT pinned ({exc})")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    notes.append(f"nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
    return ", ".join(notes)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid`, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB, from /proc/<pid>/status."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def core_busy_seconds() -> dict[int, float]:
    """Busy (non-idle, non-iowait) seconds of each core since boot, from /proc/stat."""
    busy: dict[int, float] = {}
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                ticks = [int(v) for v in values[:8]]
                busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK
    return busy


DB_COMMANDS = ("postgres", "redis-server")


def process_cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid -> (command name, utime + stime) of every process, from /proc/<pid>/stat."""
    table: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                raw = fh.read()
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        fields = raw.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return table


def kernel_irq_seconds() -> float:
    """irq + softirq seconds of all cores (network processing not charged to a process)."""
    with open("/proc/stat") as fh:
        values = fh.readline().split()[1:]
    return (int(values[5]) + int(values[6])) / CLK_TCK


class CpuWindow:
    """CPU% between start and `stop()` of the generator (this process), the server processes,
    PostgreSQL + Redis, the kernel's irq/softirq work, and every other process on the machine
    ("foreign": other sessions' test suites share these 2 cores; a figure taken beside them is
    flagged, not trusted). `foreign_top` names the biggest foreign processes."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.wall = time.monotonic()
        self.own = own_cpu_seconds()
        self.servers = sum(proc_cpu_seconds(p) for p in self.pids)
        self.procs = process_cpu_seconds()
        self.irq = kernel_irq_seconds()
        self.gen_pct = 0.0
        self.srv_pct = 0.0
        self.db_pct = 0.0
        self.irq_pct = 0.0
        self.srv_seconds = 0.0
        self.db_seconds = 0.0
        self.foreign_pct = 0.0
        self.foreign_top: list[tuple[str, float]] = []

    def stop(self) -> CpuWindow:
        wall = max(time.monotonic() - self.wall, 1e-9)
        gen = own_cpu_seconds() - self.own
        srv = sum(proc_cpu_seconds(p) for p in self.pids) - self.servers
        mine = {os.getpid(), *self.pids}
        db = 0.0
        foreign: dict[str, float] = {}
        for pid, (comm, cpu) in process_cpu_seconds().items():
            if pid in mine:
                continue
            used = cpu - self.procs.get(pid, (comm, 0.0))[1]
            if used <= 0:
                continue
            if comm.startswith(DB_COMMANDS):
                db += used
            else:
                foreign[comm] = foreign.get(comm, 0.0) + used
        self.gen_pct = 100.0 * gen / wall
        self.srv_pct = 100.0 * srv / wall
        self.srv_seconds = srv
        self.db_seconds = db
        self.db_pct = 100.0 * db / wall
        self.irq_pct = 100.0 * (kernel_irq_seconds() - self.irq) / wall
        self.foreign_pct = 100.0 * sum(foreign.values()) / wall
        ranked = sorted(foreign.items(), key=lambda item: -item[1])[:3]
        self.foreign_top = [(comm, 100.0 * used / wall) for comm, used in ranked]
        return self

    @property
    def other(self) -> str:
        """Foreign processes' CPU in % of one core (PostgreSQL, Redis and irq left out)."""
        return f"{self.foreign_pct:.0f}"

    @property
    def foreign_note(self) -> str:
        top = ", ".join(f"{comm} {pct:.0f}%" for comm, pct in self.foreign_top if pct >= 1)
        return f"foreign {self.foreign_pct:.0f}%" + (f" ({top})" if top else "")


async def wait_quiet(limit: float, threshold: float = 15.0, sample: float = 2.0) -> str:
    """Wait (up to `limit` s) until other processes use under `threshold` % of a core over a
    `sample`-s window; returns a note about the load that remained."""
    if limit <= 0:
        return ""
    waited = 0.0
    while True:
        window = CpuWindow([])
        await asyncio.sleep(sample)
        window.stop()
        if window.foreign_pct + window.db_pct < threshold:
            return f"quiet after {waited:.0f} s" if waited else "quiet"
        waited += sample
        if waited >= limit:
            return f"BUSY MACHINE after {waited:.0f} s: {window.foreign_note}"


# -- server processes --------------------------------------------------------------------------

LISTENING = re.compile(r"listening on http://([^:\s]+):(\d+)")
_live: set[Server] = set()


class Server:
    """A server process on core 0 (``taskset -c 0``) with a raised open-file limit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log: deque[str] = deque(maxlen=200)
        self.gc_pauses: list[str] = []
        """Lines of bench/gc_probe.py, kept whole."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        command = [
            "prlimit",
            f"--nofile={NOFILE}:{NOFILE}",
            "taskset",
            "-c",
            str(SERVER_CORE),
            *self.argv,
        ]
        self.proc = subprocess.Popen(
            command,
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        _live.add(self)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stderr:
            self.log.append(line)
            found = LISTENING.search(line)
            if found:
                self.port = int(found.group(2))
                break
            if time.monotonic() > deadline:
                break
        if not self.port:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n" + "".join(self.log))
        stream = self.proc.stderr
        threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line)
            if line.startswith("gc-probe:"):
                self.gc_pauses.append(line.strip())

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s; returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        _live.discard(self)
        return proc.returncode

    def tail(self, lines: int = 20) -> str:
        return "".join(list(self.log)[-lines:])


def start_py_spy(directory: Path, name: str, label: str, pid: int, duration: float) -> Any:
    """`py-spy record` of `pid` for `duration` s into DIRECTORY/NAME-<label slug>.txt (raw
    collapsed stacks, for bench/pyspy_summary.py); returns the py-spy process."""
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    output = directory / f"{name}-{slug}.txt"
    py_spy = Path(sys.executable).with_name("py-spy")
    log(f"  profiling {label} with py-spy -> {output}")
    command = [str(py_spy), "record", "--pid", str(pid), "--rate", "250"]
    command += ["--duration", str(math.ceil(duration)), "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_all_servers() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop(timeout=5)


def run_bench(bench: Coroutine[Any, Any, int]) -> int:
    """Run a bench's main coroutine; exit status 130 on Ctrl-C; never leave servers behind."""
    try:
        return asyncio.run(bench)
    except KeyboardInterrupt:
        return 130
    finally:
        kill_all_servers()


@dataclass(frozen=True)
class Spec:
    """A server under test: socketsvc (SQLite or PostgreSQL, 1 or 2 processes), bare, node."""

    label: str
    kind: str  # "socketsvc" | "bare" | "node"
    database: str = "sqlite"  # socketsvc only: "sqlite" | "postgres"
    processes: int = 1
    relay: bool = False
    bot: str = "bench_bots:noop"
    env: tuple[tuple[str, str], ...] = ()
    handoff: bool = False
    """socketsvc, scenario b: visitors ask for a human first, so the bot runner stays idle."""
    key: str = ""
    """Short name for `bench/run.py --servers`."""
    gc_probe: bool = False
    """socketsvc: start it through bench/gc_probe.py, which logs slow GC collections."""


@dataclass
class Target:
    spec: Spec
    servers: list[Server]
    secret: str = SECRET

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def visitor_url(self) -> str:
        return self.servers[0].url

    @property
    def agent_url(self) -> str:
        return self.servers[-1].url

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    def rss_kib(self) -> int:
        return sum(proc_rss_kib(p) for p in self.pids)


async def create_pg_database() -> str:
    import asyncpg

    name = f"socketsvc_bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@contextlib.asynccontextmanager
async def launch(spec: Spec) -> AsyncIterator[Target]:
    """Start the servers of `spec` (fresh database, unique Redis channel), stop them after."""
    workdir = Path(tempfile.mkdtemp(prefix="socketsvc-bench-"))
    database: str | None = None
    servers: list[Server] = []
    try:
        if spec.kind == "socketsvc":
            env = {
                "HOST": "127.0.0.1",
                "PORT": "0",
                "SOCKETSVC_SECRET": SECRET,
                "BOT": spec.bot,
                "PYTHONPATH": str(BENCH),
                "LOG_LEVEL": "INFO",
                **LIMITS,
                **dict(spec.env),
            }
            if spec.database == "postgres":
                database = await create_pg_database()
                env["DATABASE_URL"] = pg_url(database)
            else:
                env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
            if spec.processes > 1:
                env["REDIS_URL"] = REDIS_URL
                env["REDIS_CHANNEL"] = f"socketsvc-bench-{uuid.uuid4().hex[:12]}"
            argv = (
                [PYTHON, str(BENCH / "gc_probe.py")]
                if spec.gc_probe
                else [PYTHON, "-m", "socketsvc"]
            )
            for i in range(spec.processes):
                servers.append(Server(f"{spec.label}#{i}", argv, env, workdir))
        elif spec.kind == "bare":
            argv = [PYTHON, str(BENCH / "servers" / "bare_socketio.py"), "--port", "0"]
            servers.append(Server(spec.label, argv + (["--relay"] if spec.relay else []), {}, ROOT))
        elif spec.kind == "node":
            argv = ["node", str(BENCH / "servers" / "node_server.mjs"), "--port", "0"]
            servers.append(Server(spec.label, argv + (["--relay"] if spec.relay else []), {}, ROOT))
        else:  # pragma: no cover
            raise ValueError(spec.kind)
        for server in servers:
            await asyncio.to_thread(server.start)
        yield Target(spec, servers)
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)
        if database is not None:
            with contextlib.suppress(Exception):
                await drop_pg_database(database)
        shutil.rmtree(workdir, ignore_errors=True)


# -- clients -----------------------------------------------------------------------------------


def source_fingerprint() -> str:
    """sha256 (12 hex digits) of socketsvc's Python sources as measured: the code changes often,
    and a figure is only comparable with others taken on the same code."""
    digest = hashlib.sha256()
    files = sorted([*(ROOT / "socketsvc").rglob("*.py"), *(ROOT / "namespaces").glob("*.py")])
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def new_http() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))


@dataclass
class Ramp:
    clients: list[BaseSocket]
    failures: Counter[str]
    elapsed: float
    cpu: CpuWindow

    @property
    def rate(self) -> float:
        return len(self.clients) / self.elapsed if self.elapsed > 0 else 0.0


async def open_clients(
    http: aiohttp.ClientSession,
    url: str,
    count: int,
    *,
    concurrency: int = 200,
    polling: bool = False,
    namespace: str = "/chat",
    auth: Callable[[int], dict[str, Any] | None] | None = None,
    on_event: Any = None,
    on_ping: Any = None,
    on_close: Any = None,
    pids: Sequence[int] = (),
    start_index: int = 0,
    timeout: float = 60.0,
    wait_event: str | None = "session",
) -> Ramp:
    """Connect `count` clients, at most `concurrency` handshakes in flight; each is done when
    its namespace accepted it and its `session` event arrived."""
    clients: list[BaseSocket] = []
    failures: Counter[str] = Counter()
    semaphore = asyncio.Semaphore(concurrency)
    factory = PollingClient if polling else WebSocketClient

    async def one(index: int) -> None:
        async with semaphore:
            client = factory(
                url,
                namespace,
                auth(index) if auth is not None else None,
                on_event=on_event,
                on_ping=on_ping,
                on_close=on_close,
            )
            client.index = index  # type: ignore[attr-defined]
            try:
                await client.connect(http, wait_event=wait_event, timeout=timeout)
            except Exception as exc:
                failures[type(exc).__name__ + (f": {exc}"[:80] if str(exc) else "")] += 1
                client.abort()  # type: ignore[attr-defined]
                return
            clients.append(client)

    cpu = CpuWindow(pids)
    started = time.monotonic()
    await asyncio.gather(*(one(start_index + i) for i in range(count)))
    elapsed = time.monotonic() - started
    return Ramp(clients, failures, elapsed, cpu.stop())


def abort_all(clients: Sequence[BaseSocket]) -> None:
    for client in clients:
        client.abort()  # type: ignore[attr-defined]


async def validate(target: Target, http: aiohttp.ClientSession, polling: bool = True) -> str:
    """One message round trip over WebSocket (and long-polling) with the lean client."""
    results = []
    for use_polling in (False, True) if polling else (False,):
        factory = PollingClient if use_polling else WebSocketClient
        client = factory(target.visitor_url, "/chat")
        await client.connect(http, timeout=15)
        started = time.monotonic()
        ack = await client.call("message", {"client_id": uuid.uuid4().hex, "text": TEXT}, 15)
        took = (time.monotonic() - started) * 1000
        await client.close()
        message = ack.get("message", {}) if isinstance(ack, dict) else {}
        if not (isinstance(ack, dict) and ack.get("ok") and message.get("text") == TEXT):
            raise RuntimeError(f"{target.label}: unexpected ack {ack!r}")
        session = client.session or {}
        if not session.get("conversation_id"):
            raise RuntimeError(f"{target.label}: no session event ({session!r})")
        results.append(
            f"{'polling' if use_polling else 'websocket'} ack seq={message.get('seq')} "
            f"in {took:.1f} ms"
        )
    return "; ".join(results)


# -- open-loop load ----------------------------------------------------------------------------


@dataclass
class RateResult:
    offered: float
    duration: float
    sent: int = 0
    acked: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    """Send to ack, ms."""
    send_lag: list[float] = field(default_factory=list)
    """How late each send was against its open-loop schedule, ms (generator health)."""
    cpu: CpuWindow | None = None
    acked_in_window: int = 0
    tail: float = 0.0
    """Seconds the server stayed busy after the last ack (set by the caller, via `settle`)."""

    @property
    def lost(self) -> int:
        return self.sent - self.acked

    @property
    def achieved(self) -> float:
        return self.acked_in_window / self.duration if self.duration else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values()) + self.lost


async def run_rate(
    clients: Sequence[BaseSocket],
    rate: float,
    duration: float,
    *,
    pids: Sequence[int] = (),
    prefix: str = "m",
    drain: float = 5.0,
    sent_at: dict[str, float] | None = None,
) -> RateResult:
    """Open loop: `rate` messages/s in total for `duration` s, round-robin over `clients` (each
    sends its share, evenly spaced), whatever the acks do. Latency is measured from the moment a
    message is written to the moment its ack is parsed. Then waits up to `drain` s for acks."""
    result = RateResult(offered=rate, duration=duration)
    total = max(1, int(rate * duration))
    latencies = result.latencies
    errors = result.errors
    lag = result.send_lag
    monotonic = time.monotonic
    window_end = [0.0]
    acked_in_window = [0]
    live = [c for c in clients if not c.closed]
    if not live:
        raise RuntimeError("no connected clients left")
    for client in live:
        client.raw_acks = True

    def on_ack(sent: float) -> Callable[[Any], None]:
        def callback(ack: Any) -> None:
            now = monotonic()
            latencies.append((now - sent) * 1000.0)
            result.acked += 1
            if now <= window_end[0]:
                acked_in_window[0] += 1
            ok, code = ack_ok(ack)
            if not ok:
                errors[str(code)] += 1

        return callback

    # '["message",{"client_id":"<id>","text":TEXT}]', encoded once.
    head, tail = json.dumps(["message", {"client_id": "\0", "text": TEXT}]).split("\\u0000")
    cpu = CpuWindow(pids)
    start = monotonic()
    window_end[0] = start + duration + 0.001
    sent = 0
    n = len(live)
    while sent < total:
        now = monotonic()
        due = min(total, int((now - start) * rate) + 1)
        while sent < due:
            client = live[sent % n]
            client_id = f"{prefix}{sent}"
            if sent_at is not None:
                sent_at[client_id] = now
            lag.append((now - (start + sent / rate)) * 1000.0)
            client.emit_encoded(f"{head}{client_id}{tail}", on_ack(now))
            sent += 1
        next_due = start + sent / rate
        await asyncio.sleep(max(0.0, next_due - monotonic()))
    result.sent = sent
    await wait_until(lambda: result.acked >= sent, drain)
    result.cpu = cpu.stop()
    result.acked_in_window = acked_in_window[0]
    return result


async def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll `condition` every `step` s for up to `timeout` s."""
    for _ in range(max(1, int(timeout / step))):
        if condition():
            return True
        await asyncio.sleep(step)
    return condition()


async def settle(
    clients: Sequence[BaseSocket],
    pids: Sequence[int] = (),
    timeout: float = 30.0,
    idle_pct: float = 10.0,
) -> float:
    """Wait until no client waits for an ack and the servers' CPU is under `idle_pct` % over
    0.25 s (socketsvc's bot runner works on after the acks); returns the seconds waited."""
    started = time.monotonic()
    await wait_until(lambda: all(c.pending_acks == 0 for c in clients), timeout, 0.05)
    while pids and time.monotonic() - started < timeout:
        window = CpuWindow(pids)
        await asyncio.sleep(0.25)
        if window.stop().srv_pct < idle_pct:
            break
    return time.monotonic() - started


# -- numbers and tables ------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0 or value != value or base != base:
        return "-"
    return f"x{value / base:.2f}"


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [title, ""]
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        cells = [
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
