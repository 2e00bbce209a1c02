"""The files Heroku's Python buildpack builds from agree with what CI tests.

CI installs with `-c constraints.txt` (the lock of runtime and test dependencies, `uv pip compile
setup.cfg --extra test`); the buildpack installs `requirements.txt` (the runtime subset, `uv pip
compile setup.cfg -c constraints.txt`, plus `.` for the app itself). So every pin of
requirements.txt must be constraints.txt's pin of that package, and requirements.txt must cover
every runtime requirement of setup.cfg (with its extras' requirements): then what CI tested is
what Heroku runs. Regenerate both after a change of setup.cfg (the header of each file says how).
"""

from __future__ import annotations

import configparser
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
PACKAGE_MANAGER_FILES = ("requirements.txt", "Pipfile.lock", "poetry.lock", "uv.lock")


def pins(path: Path) -> dict[str, str]:
    """`name==version` lines of a pip-compile/uv lock, by canonical name."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def install_requires() -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    return [Requirement(line) for line in (raw.split("#")[0].strip() for raw in lines) if line]


def required_names(requirements: list[Requirement]) -> dict[str, Requirement]:
    """The requirements that apply here (markers) and, for each extra asked for (`redis[hiredis]`),
    the requirements that extra adds (read from the installed package's metadata)."""
    environment: dict[str, str] = dict(default_environment())
    needed: dict[str, Requirement] = {}
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate({**environment, "extra": ""}):
            continue
        needed[canonicalize_name(req.name)] = req
        for extra in sorted(req.extras):
            for spec in metadata.requires(req.name) or []:
                added = Requirement(spec)
                if added.marker is not None and added.marker.evaluate(
                    {**environment, "extra": extra}
                ):
                    needed.setdefault(canonicalize_name(added.name), added)
    return needed


def test_requirements_pins_are_the_constraints_pins() -> None:
    locked = pins(ROOT / "requirements.txt")
    tested = pins(ROOT / "constraints.txt")
    assert locked, "requirements.txt pins nothing"
    differ = {
        name: (version, tested.get(name, "not in constraints.txt"))
        for name, version in locked.items()
        if tested.get(name) != version
    }
    print(f"\nrequirements.txt: {len(locked)} pins, all equal to constraints.txt's: {not differ}")
    assert not differ, f"requirements.txt vs constraints.txt (regenerate it): {differ}"


def test_requirements_cover_setup_cfg() -> None:
    locked = pins(ROOT / "requirements.txt")
    needed = required_names(install_requires())
    missing = sorted(name for name in needed if name not in locked)
    outside = {
        name: (locked[name], str(req.specifier))
        for name, req in needed.items()
        if name in locked and not req.specifier.contains(locked[name], prereleases=True)
    }
    print(f"\nsetup.cfg install_requires (with extras): {len(needed)}, pinned: {sorted(needed)}")
    assert not missing, f"not in requirements.txt (regenerate it): {missing}"
    assert not outside, f"pins outside setup.cfg's bounds: {outside}"


def test_requirements_install_the_app_itself() -> None:
    """The last requirement is `.`: the app is installed (namespaces/ becomes
    socketsvc.namespaces only in an installed package), not run from the checkout."""
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[-1] == ".", f"requirements.txt must end with '.', ends with {lines[-1]!r}"


def test_exactly_one_package_manager_file_and_the_python_version() -> None:
    present = [name for name in PACKAGE_MANAGER_FILES if (ROOT / name).exists()]
    assert present == ["requirements.txt"], present
    assert not (ROOT / "runtime.txt").exists(), "runtime.txt is deprecated: .python-version"
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", version), f".python-version: {version!r} (major.minor)"
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    python_requires = config["options"]["python_requires"]
    assert SpecifierSet(python_requires).contains(Version(f"{version}.0")), python_requires
    # CI (and so constraints.txt) runs on this Python: Heroku must run the same minor version.
    ci = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert version == ci, f".python-version {version}, the suite runs on {ci}"


def test_every_python_package_of_the_tree_is_packaged() -> None:
    """Each directory of socketsvc/ with an __init__.py is in setup.cfg's `packages` (a missing one
    installs without its modules, and the installed app fails to import: only a built install
    shows it)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}
    in_tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "socketsvc").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert in_tree - listed == set(), (
        f"add to setup.cfg [options] packages: {sorted(in_tree - listed)}"
    )
