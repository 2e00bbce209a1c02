"""Every override of a dependency's private API, in one place, each with the versions it was
tested on.

A `Patch` names the distributions whose private API it uses, the range of versions it was tested
on (`Requirement`), and the upstream functions it copies or replaces, each with the hash of
`inspect.getsource()` of the version it was written against. `apply()` runs once when a server is
built: a patch whose dependency is installed at a version outside its range is not applied, and
the service runs the dependency's stock code path instead (the server and manager classes are
chosen from `Applied`); one WARNING per such patch names the package, the installed version and
the tested range. The hashes are checked by the tests (tests/unit/socketsvc/transport/patches),
not at start: a new release inside the range whose source differs fails CI, and
`python -m socketsvc.transport.patches` prints the hashes of what is installed (see
docs/operations.md, "Dependency patches").
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


def _release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version string (`4.15.1` -> (4, 15, 1)); a pre-release or
    local suffix is ignored (4.16.0rc1 counts as 4.16.0)."""
    found = re.match(r"\d+(?:\.\d+)*", version.strip())
    if found is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in found.group(0).split("."))


def _compare(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    width = max(len(a), len(b))
    a, b = a + (0,) * (width - len(a)), b + (0,) * (width - len(b))
    return (a > b) - (a < b)


@dataclass(frozen=True)
class Requirement:
    """Versions `minimum` <= v < `below` of distribution `package` (as pip names it)."""

    package: str
    minimum: str
    below: str

    @property
    def tested(self) -> str:
        return f">={self.minimum},<{self.below}"

    def contains(self, version: str) -> bool:
        release = _release(version)
        return (
            _compare(release, _release(self.minimum)) >= 0
            and _compare(release, _release(self.below)) < 0
        )

    def installed(self) -> str | None:
        """The installed version, or None when the distribution is not installed."""
        try:
            # Looked up on the module at call time, so that a test can fake it.
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None


@dataclass(frozen=True)
class Patch:
    name: str
    """A short name: `<dependency>.<what>`."""
    why: str
    requires: tuple[Requirement, ...]
    upstream: dict[str, str] = field(default_factory=dict)
    """`module:Qualified.name` of each upstream function copied or replaced -> `source_hash()`
    of it in the version the patch was written against."""

    def outside(self) -> list[tuple[Requirement, str | None]]:
        """The requirements the installed versions do not meet, with the installed version."""
        misses = []
        for requirement in self.requires:
            version = requirement.installed()
            if version is None or not requirement.contains(version):
                misses.append((requirement, version))
        return misses

    def drift(self) -> dict[str, tuple[str, str]]:
        """Upstream functions whose installed source differs from the recorded one:
        target -> (recorded hash, installed hash)."""
        changed = {}
        for target, recorded in self.upstream.items():
            try:
                installed = source_hash(resolve(target))
            except (ImportError, AttributeError, OSError, TypeError) as exc:
                installed = f"missing ({type(exc).__name__})"
            if installed != recorded:
                changed[target] = (recorded, installed)
        return changed


def resolve(target: str) -> object:
    """The object named by `module:Qualified.name`."""
    module_name, _, qualname = target.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def source_hash(obj: object) -> str:
    """sha256 (first 16 hex digits) of `inspect.getsource(obj)`."""
    return hash_source(inspect.getsource(obj))  # type: ignore[arg-type]


def hash_source(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Applied:
    """The names of the patches in use in this process (see `apply`)."""

    names: frozenset[str]

    def __contains__(self, patch: object) -> bool:
        return isinstance(patch, Patch) and patch.name in self.names

    @classmethod
    def of(cls, patches: Iterable[Patch]) -> Applied:
        return cls(frozenset(p.name for p in patches))


def registry() -> tuple[Patch, ...]:
    """Every patch of the service."""
    from socketsvc.transport.patches import (
        aiohttp_writer,
        engineio_polling,
        engineio_websocket,
        socketio_pubsub,
        socketio_rooms,
        socketio_server,
    )

    return (
        socketio_server.PATCH,
        engineio_polling.PATCH,
        engineio_websocket.PATCH,
        aiohttp_writer.PATCH,
        socketio_pubsub.PATCH,
        socketio_rooms.PATCH,
    )


def apply(patches: Iterable[Patch] | None = None) -> Applied:
    """The patches whose dependencies are installed at tested versions; one WARNING for each of
    the others, which are not applied (the stock code path runs instead)."""
    applied = []
    for patch in registry() if patches is None else patches:
        misses = patch.outside()
        if not misses:
            applied.append(patch)
            continue
        found = "; ".join(
            f"{requirement.package} {version or '(not installed)'} is installed, "
            f"tested on {requirement.tested}"
            for requirement, version in misses
        )
        log.warning(
            "dependency patch %s not applied (%s): running the stock code path; it %s",
            patch.name,
            found,
            patch.why,
        )
    return Applied.of(applied)


def main() -> int:
    """`python -m socketsvc.transport.patches`: each patch, whether it applies here, and the
    hashes of the installed upstream functions it covers (to refresh a patch's `upstream` after
    checking its copy against the new source)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    applied = apply()
    for patch in registry():
        state = "applied" if patch in applied else "NOT applied"
        ranges = ", ".join(f"{r.package}{r.tested} ({r.installed()})" for r in patch.requires)
        print(f"{patch.name}: {state}; tested on {ranges}")
        drift = patch.drift()
        for target, recorded in patch.upstream.items():
            installed = drift.get(target, (recorded, recorded))[1]
            mark = "" if installed == recorded else f"  CHANGED (recorded {recorded})"
            print(f'    "{target}": "{installed}",{mark}')
    return 0
