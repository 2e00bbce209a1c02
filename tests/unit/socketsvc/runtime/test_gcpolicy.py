"""`socketsvc.runtime.gcpolicy` on this interpreter's real collector: what is frozen, what a
freeze step collects, and that garbage among frozen objects is collected once the growth bound
is passed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from socketsvc.runtime.gcpolicy import GcPolicy, running
from socketsvc.settings import Settings, SettingsError


class Node:
    """A cyclic-GC tracked object that can point at itself."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    """Two nodes pointing at each other: only the cyclic collector can free them."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def unfrozen_ids() -> set[int]:
    """ids of the objects the collector still scans (gc.get_objects() skips frozen ones)."""
    return {id(obj) for obj in gc.get_objects()}


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    """Automatic collections off, so only the policy collects; everything restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()
    if was_enabled:
        gc.enable()


def test_start_freezes_the_live_heap_and_stop_hands_it_back() -> None:
    kept = Node()
    policy = GcPolicy(interval=30.0, growth=0.25)
    step = policy.start()
    assert step.kind == "start"
    assert gc.get_freeze_count() > 0
    assert id(kept) not in unfrozen_ids()
    assert policy.baseline == step.blocks > 0
    policy.stop()
    assert gc.get_freeze_count() == 0
    assert id(kept) in unfrozen_ids()


def test_a_freeze_step_collects_new_garbage_and_freezes_the_survivors() -> None:
    policy = GcPolicy(interval=30.0, growth=0.25)
    policy.start()
    garbage = weakref.ref(cycle())
    kept = Node()
    assert garbage() is not None
    step = policy.step()
    assert step.kind == "freeze"
    assert step.collected >= 2
    assert garbage() is None
    assert id(kept) not in unfrozen_ids()
    assert policy.full_collections == 0


def test_garbage_among_frozen_objects_is_collected_once_memory_grows_past_the_bound() -> None:
    policy = GcPolicy(interval=30.0, growth=0.05, min_growth=0, min_spacing=0.0)
    policy.start()
    connection = cycle()
    frozen_garbage = weakref.ref(connection)
    policy.step()  # frozen while still in use
    del connection
    for _ in range(3):  # nothing grows: freeze steps only, and the frozen cycle stays
        assert policy.step().kind == "freeze"
    assert frozen_garbage() is not None
    growth = [[i] for i in range(int(policy.baseline * 0.06))]  # > 5 % more memory blocks
    step = policy.step()
    assert step.kind == "full"
    assert frozen_garbage() is None
    assert policy.full_collections == 1
    assert policy.baseline >= len(growth)
    assert policy.step().kind == "freeze"  # the bound moved with the live heap


def test_a_small_heap_waits_for_the_minimum_growth() -> None:
    policy = GcPolicy(interval=30.0, growth=0.05, min_growth=10**9)
    policy.start()
    growth = [[i] for i in range(int(policy.baseline * 0.06))]
    assert policy.step().kind == "freeze"
    assert len(growth) > 0


async def test_running_applies_the_settings_until_the_block_ends() -> None:
    settings = Settings(gc_freeze_interval=0.01, gc_full_growth=25.0)
    async with running(settings) as policy:
        assert policy is not None
        assert gc.get_freeze_count() > 0
        garbage = weakref.ref(cycle())
        for _ in range(200):
            if garbage() is None:
                break
            await asyncio.sleep(0.01)
        assert garbage() is None  # collected by the background freeze steps
    assert gc.get_freeze_count() == 0


async def test_interval_zero_leaves_cpythons_collector_alone() -> None:
    async with running(Settings(gc_freeze_interval=0.0)) as policy:
        assert policy is None
        assert gc.get_freeze_count() == 0


def test_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    secret = {"SOCKETSVC_SECRET": "s" * 40}
    default = Settings.from_env(secret)
    assert (default.gc_freeze_interval, default.gc_full_growth) == (1.0, 25.0)
    tuned = Settings.from_env({**secret, "GC_FREEZE_INTERVAL": "0", "GC_FULL_GROWTH": "100"})
    assert (tuned.gc_freeze_interval, tuned.gc_full_growth) == (0.0, 100.0)
    with pytest.raises(SettingsError, match="GC_FREEZE_INTERVAL"):
        Settings.from_env({**secret, "GC_FREEZE_INTERVAL": "-1"})
    with pytest.raises(SettingsError, match="GC_FULL_GROWTH"):
        Settings.from_env({**secret, "GC_FULL_GROWTH": "0"})


def test_full_collections_are_spaced_unless_memory_runs_away() -> None:
    """Past the bound within `min_spacing` of the last full collection: freeze steps only (a
    reconnect storm is not collected in the middle); past 4 x the bound: full at once; after
    the spacing: full."""
    now = [1000.0]
    policy = GcPolicy(
        interval=1.0, growth=0.05, min_growth=0, min_spacing=30.0, clock=lambda: now[0]
    )
    policy.start()
    growth = [[i] for i in range(int(policy.baseline * 0.06))]  # past the bound
    assert policy.step().kind == "freeze"
    now[0] += 29.0
    assert policy.step().kind == "freeze"
    now[0] += 1.0
    assert policy.step().kind == "full"
    more = [[i] for i in range(int(policy.baseline * 0.3))]  # past 4 x the bound
    now[0] += 1.0
    assert policy.step().kind == "full"
    assert len(growth) and len(more)
