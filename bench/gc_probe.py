"""Diagnostics only: run ``python -m socketsvc`` with a `gc` callback that logs slow collections.

    python bench/gc_probe.py [socketsvc arguments]

Each cyclic-GC collection that takes longer than 20 ms is printed on stderr as
``gc-probe: generation N took T ms (collected C, tracked objects O)``; a full (generation 2)
collection stops the event loop for its whole duration. `bench/soak.py --gc-probe` starts the
service this way and counts the pauses. Nothing in the service changes.
"""

from __future__ import annotations

import gc
import runpy
import sys
import time
from typing import Any

SLOW = 0.020
_started = [0.0]


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    took = time.perf_counter() - _started[0]
    if took >= SLOW:
        # Counting the tracked objects takes a while itself: only after full collections.
        tracked = (
            f", tracked objects {len(gc.get_objects())}, frozen {gc.get_freeze_count()}"
            if info["generation"] == 2
            else ""
        )
        print(
            f"gc-probe: generation {info['generation']} took {took * 1000:.0f} ms "
            f"(collected {info['collected']}{tracked})",
            file=sys.stderr,
            flush=True,
        )


gc.callbacks.append(_callback)
sys.argv = ["socketsvc", *sys.argv[1:]]
runpy.run_module("socketsvc", run_name="__main__", alter_sys=True)
