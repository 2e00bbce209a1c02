"""The guard of the dependency patches: the source they were copied from, and version ranges."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import re

import pytest
from engineio import async_socket

from socketsvc.transport import patches
from socketsvc.transport.patches import Patch, Requirement, hash_source, resolve, source_hash

PATCHES = patches.registry()


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_every_patched_upstream_function_still_has_the_source_the_patch_was_made_from(patch):
    """Fails after an upgrade that changed a function a patch copies or overrides: read the
    new source against the patch, then record the new hash (docs/operations.md)."""
    assert patch.upstream, "a patch names the upstream functions it copies or replaces"
    assert patch.drift() == {}


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_the_installed_versions_are_inside_every_tested_range(patch):
    """The constraints file pins what the patches were tested on."""
    assert patch.outside() == []


def test_the_guard_fails_against_a_modified_copy_of_the_source(tmp_path, monkeypatch):
    """The check of the test above, against python-engineio's `_websocket_handler` changed by
    one line (as a release that changed it would be): loaded from a file of its own, so that
    `inspect.getsource` reads the modified text, and put in place of the installed one."""
    target = "engineio.async_socket:AsyncSocket._websocket_handler"
    (patch,) = [p for p in PATCHES if target in p.upstream]
    source = inspect.getsource(async_socket.AsyncSocket._websocket_handler)
    assert hash_source(source) == patch.upstream[target]
    changed = source.replace("self.upgrading = True", "self.upgrading = False", 1)
    assert changed != source
    (tmp_path / "modified_async_socket.py").write_text("class AsyncSocket:\n" + changed)
    monkeypatch.syspath_prepend(str(tmp_path))
    modified = importlib.import_module("modified_async_socket")
    monkeypatch.setattr(
        async_socket.AsyncSocket, "_websocket_handler", modified.AsyncSocket._websocket_handler
    )
    drift = patch.drift()
    assert list(drift) == [target]
    assert drift[target] == (patch.upstream[target], hash_source(changed))
    with pytest.raises(AssertionError):
        test_every_patched_upstream_function_still_has_the_source_the_patch_was_made_from(patch)


def test_drift_reports_a_changed_function_and_a_missing_one(monkeypatch):
    target = "engineio.async_socket:AsyncSocket.poll"
    patch = Patch(
        name="test.poll",
        why="test",
        requires=(),
        upstream={target: source_hash(resolve(target)), "engineio.async_socket:Gone.x": "0"},
    )
    assert list(patch.drift()) == ["engineio.async_socket:Gone.x"]

    async def poll(self):  # a release whose poll() is different
        return []

    monkeypatch.setattr(async_socket.AsyncSocket, "poll", poll)
    drift = patch.drift()
    assert set(drift) == {target, "engineio.async_socket:Gone.x"}
    assert drift[target][0] != drift[target][1]


@pytest.mark.parametrize(
    ("version", "inside"),
    [
        ("4.10.9", False),
        ("4.11", True),
        ("4.11.0", True),
        ("4.15.1", True),
        ("4.15.99", True),
        ("4.16.0rc1", False),
        ("4.16.0", False),
        ("5.0", False),
    ],
)
def test_a_range_holds_its_minimum_and_not_its_upper_bound(version, inside):
    assert Requirement("python-engineio", "4.11", "4.16").contains(version) is inside


def test_apply_logs_one_warning_per_patch_outside_its_range(monkeypatch, caplog):
    real = importlib.metadata.version
    fake = {"python-engineio": "4.16.0", "aiohttp": "3.10.2"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: fake.get(name) or real(name))
    with caplog.at_level(logging.WARNING, logger="socketsvc.transport.patches"):
        applied = patches.apply()
    assert applied.names == {
        "socketio.server_hardening",
        "socketio.pubsub_canary",
        "socketio.indexed_rooms",
    }
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert all(re.search(r"not applied \(.* is installed, tested on >=", line) for line in lines)
    assert sum("python-engineio 4.16.0 is installed, tested on >=4.11,<4.16" in x for x in lines)
    assert any("aiohttp 3.10.2 is installed, tested on >=3.14,<3.15" in line for line in lines)


def test_the_module_prints_each_patch_and_its_hashes(capsys):
    assert patches.main() == 0
    out = capsys.readouterr().out
    for patch in PATCHES:
        assert f"{patch.name}: applied" in out
    assert "CHANGED" not in out
