"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where the time goes.

    .venv/bin/python bench/pyspy_summary.py PROFILE.txt [--top 25]

Prints the share of samples per package of the leaf frame (self time), the functions with the
most self time, and the functions with the most inclusive time (on the stack at all), skipping
the event loop's own frames so that handlers and libraries stand out.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
LOOP = (
    "asyncio/base_events.py",
    "asyncio/events.py",
    "asyncio/runners.py",
    "runpy",
    "(threading.py",
    "concurrent/futures/thread.py",
    "socketsvc/__main__.py",
    "socketsvc/cli.py",
)
IDLE_LEAVES = (
    # Waiting, not working: the event loop in epoll (py-spy shows no deeper frame), worker
    # threads blocked on their queues, and waits on locks and conditions.
    "Runner.run (asyncio/runners.py",
    "_connection_worker_thread (aiosqlite/core.py:59)",
    "_worker (concurrent/futures/thread.py:81)",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "select (selectors.py",
    "Server.start.<locals>.<lambda> (harness.py",  # bench/run.py's stderr reader
    "EpollSelector.select (selectors.py",
)


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        stacks.append((stack.split(";"), int(count)))
    return stacks


def name(frame: str) -> str:
    found = FRAME.match(frame)
    if not found:
        return frame
    return f"{found['func']} ({found['file']})"


def package(frame: str) -> str:
    found = FRAME.match(frame)
    file = found["file"] if found else frame
    parts = file.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    top = parts[0] if len(parts) > 1 else "stdlib:" + parts[0].removesuffix(".py")
    if top in ("socketsvc", "namespaces") and len(parts) > 1:
        return f"socketsvc.{parts[-1].removesuffix('.py')}"
    if top.startswith("stdlib:") and file.startswith("<"):
        return "other"
    return top


def summarise(path: Path, top: int = 25) -> str:
    every = parse(path)
    stacks = [(f, c) for f, c in every if not f[-1].startswith(IDLE_LEAVES)]
    idle = sum(c for _, c in every) - sum(c for _, c in stacks)
    total = sum(count for _, count in stacks) or 1
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    in_socketsvc: Counter[str] = Counter()
    for frames, count in stacks:
        leaf = frames[-1]
        self_time[name(leaf)] += count
        packages[package(leaf)] += count
        seen = set()
        for frame in frames:
            label = name(frame)
            if label in seen or any(loop in frame for loop in LOOP):
                continue
            seen.add(label)
            inclusive[label] += count
        # The innermost socketsvc frame: which of our functions the time is spent under.
        for frame in reversed(frames):
            pkg = package(frame)
            if pkg.startswith("socketsvc."):
                in_socketsvc[name(frame)] += count
                break
    loop = sum(c for f, c in stacks if not f[0].startswith("Thread._bootstrap"))
    lines = [
        f"{path.name}: {total} busy samples ({idle} more waiting in epoll, on a queue or a lock "
        "left out); percentages of the busy samples",
        f"event-loop thread {100.0 * loop / total:.1f}%, worker threads (database) "
        f"{100.0 * (total - loop) / total:.1f}%",
        "",
    ]
    lines.append("self time by package of the leaf frame:")
    for pkg, count in packages.most_common(top):
        lines.append(f"  {100.0 * count / total:5.1f}%  {pkg}")
    lines.append("")
    lines.append("top functions by self time:")
    for label, count in self_time.most_common(top):
        lines.append(f"  {100.0 * count / total:5.1f}%  {label}")
    lines.append("")
    lines.append("top functions by inclusive time (event-loop frames skipped):")
    for label, count in inclusive.most_common(top):
        lines.append(f"  {100.0 * count / total:5.1f}%  {label}")
    lines.append("")
    lines.append("time attributed to the innermost socketsvc frame on the stack:")
    attributed = sum(in_socketsvc.values())
    for label, count in in_socketsvc.most_common(top):
        lines.append(f"  {100.0 * count / total:5.1f}%  {label}")
    lines.append(
        f"  {100.0 * (total - attributed) / total:5.1f}%  (no socketsvc frame on the stack)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.profiles:
        print(summarise(path, args.top))
        print()


if __name__ == "__main__":
    main()
