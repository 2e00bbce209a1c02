"""A rebuild of the app the way Heroku's Python buildpack (heroku/python) builds and runs it.

This is not Heroku: no buildpack, router or dyno runs here. It follows the buildpack's steps on
the same files, so that a change the buildpack would refuse, or that would not start there, fails
here first:

1. Detect: the app is the pushed tree (here: `git ls-files --cached --others --exclude-standard`,
   the working tree as it would be committed; on CI's clean clone that is HEAD) with exactly one
   package manager file: `requirements.txt`, `Pipfile.lock`, `poetry.lock` or `uv.lock` (several
   are an error; `setup.cfg`/`pyproject.toml` alone fail with "Couldn't find any supported Python
   package manager files").
2. Python: the version in `.python-version` (`runtime.txt` is deprecated); the buildpack installs
   the newest patch release of that minor version into `/app/.heroku/python`. Here: a fresh
   virtualenv (`python3 -m venv`) of this interpreter, which must be that minor version.
3. Install: `pip install -r requirements.txt` in the app directory, into that environment: the
   pins, then `.` (the app itself, so `namespaces/` becomes `socketsvc.namespaces`). Nothing else
   may be installed: `pip freeze` afterwards is exactly the lock's pins plus socketsvc.
4. Release phase: the Procfile's `release:` command, run once per deploy with the config vars
   (DATABASE_URL from the Postgres add-on, REDIS_URL from Key-Value Store, SOCKETSVC_SECRET);
   a non-zero exit fails the release. It runs again on every deploy (here: twice).
5. Dynos: the Procfile's `web:` command through bash, with `$PORT` set and the environment's
   `bin/` first on PATH; Heroku routes traffic once it listens on $PORT. Here: `/readyz` must
   answer 200, then SIGTERM to the process group (what a dyno gets on restart or scale-down),
   which must exit within Heroku's 30 s.

The database is a fresh SQLite file or a fresh PostgreSQL database (given as `postgres://...`,
the form the Postgres add-on sets) with Redis, like app.json's add-ons.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from tests.support.tokens import SECRET

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
READY_TIMEOUT = 60.0
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")
PACKAGE_MANAGER_FILES = ("requirements.txt", "Pipfile.lock", "poetry.lock", "uv.lock")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@dataclass
class Build:
    app: Path  # /app
    python: Path  # /app/.heroku/python
    procfile: dict[str, str]
    log: Path

    def env(self, **config: str) -> dict[str, str]:
        """A dyno's environment: the app's Python first on PATH, HOME=/app, the config vars; none
        of this test run's virtualenv or settings."""
        keep = ("LANG", "LC_ALL", "TZ", "TMPDIR", "SSL_CERT_FILE")
        base = {k: os.environ[k] for k in keep if k in os.environ}
        return {
            **base,
            "PATH": f"{self.python / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.app),
            "DYNO": "web.1",
            **config,
        }


def pins(path: Path) -> dict[str, str]:
    return {
        canonicalize_name(m.group(1)): m.group(2)
        for m in map(PIN.match, path.read_text().splitlines())
        if m
    }


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name]


def parse_procfile(path: Path) -> dict[str, str]:
    types: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PROCFILE_LINE.match(line.strip())
        if match:
            assert match.group(1) not in types, f"Procfile: {match.group(1)} twice"
            types[match.group(1)] = match.group(2)
    return types


def run_logged(args: list[str], log: Path, timeout: float, **kwargs: Any) -> float:
    """Run to completion, output appended to `log`; the seconds it took. Fails with the log."""
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"$ {shlex.join(args)}\n")
        out.flush()
        done = subprocess.run(
            args, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False, **kwargs
        )
    if done.returncode != 0:
        pytest.fail(f"{shlex.join(args)} exited {done.returncode}:\n{log.read_text()[-4000:]}")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    """Steps 1-3: the app directory with its Python environment installed from the lock."""
    app = tmp_path_factory.mktemp("heroku") / "app"
    log = app.parent / "build.log"
    for name in tracked_files():
        source = ROOT / name
        if source.is_file():
            (app / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, app / name)

    # 1. detect
    present = [name for name in PACKAGE_MANAGER_FILES if (app / name).is_file()]
    assert len(present) == 1, f"exactly one package manager file needed, found {present}"
    assert present == ["requirements.txt"], present
    assert (app / "Procfile").is_file()

    # 2. Python
    version = (app / ".python-version").read_text().strip()
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert version == here, f".python-version asks for {version}; this test runs {here}"
    python = app / ".heroku" / "python"
    seconds = run_logged([sys.executable, "-m", "venv", str(python)], log, timeout=60)
    print(
        f"\nbuild: {present[0]}, Python {version} ({sys.version.split()[0]}), venv {seconds:.1f} s"
    )

    # 3. install
    pip_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    pip = [str(python / "bin" / "python"), "-m", "pip"]
    seconds = run_logged(
        [*pip, "install", "--no-input", "--disable-pip-version-check", "-r", "requirements.txt"],
        log,
        timeout=240,
        cwd=app,
        env=pip_env,
    )
    frozen = subprocess.run(
        [*pip, "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        env=pip_env,
    ).stdout
    installed = {}
    for line in frozen.splitlines():
        name, _, source = line.partition(" @ " if " @ " in line else "==")
        installed[canonicalize_name(name)] = source
    expected = {**pins(app / "requirements.txt"), "socketsvc": installed.get("socketsvc", "?")}
    print(f"build: pip install -r requirements.txt {seconds:.1f} s, {len(installed)} packages")
    assert installed.get("socketsvc") == app.as_uri(), frozen  # `.`: this directory, not -e
    assert installed == expected, {
        "installed, not in the lock": sorted(set(installed) - set(expected)),
        "differs": {k: (v, installed.get(k)) for k, v in expected.items() if installed.get(k) != v},
    }
    # The installed package, not the checkout, is what runs (and it has socketsvc.namespaces).
    where = subprocess.run(
        [
            str(python / "bin" / "python"),
            "-c",
            "import socketsvc.namespaces as n; print(n.__file__)",
        ],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout.strip()
    assert where.startswith(str(python)), where

    procfile = parse_procfile(app / "Procfile")
    assert {"web", "release"} <= set(procfile), procfile
    return Build(app=app, python=python, procfile=procfile, log=log)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def redis_answers() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError as err:
        return 0, str(err)


def test_release_and_web_from_the_procfile(build: Build, database_url: str, tmp_path: Path) -> None:
    """Steps 4-5 on a fresh database: the release command, then the web dyno until /readyz."""
    config = {"SOCKETSVC_SECRET": SECRET, "LOG_LEVEL": "INFO"}
    if database_url.startswith("postgresql://"):
        config["DATABASE_URL"] = "postgres://" + database_url.removeprefix("postgresql://")
        if not redis_answers():
            pytest.fail(f"no Redis at {REDIS_URL} (scripts/services.sh starts one)")
        config["REDIS_URL"] = REDIS_URL
        config["REDIS_CHANNEL"] = f"socketsvc-deploy-{uuid.uuid4().hex[:8]}"
    else:
        config["DATABASE_URL"] = database_url
    kind = database_url.split(":", 1)[0]
    log = tmp_path / "dyno.log"

    # 4. release phase
    release = build.procfile["release"]
    seconds = run_logged(
        ["/bin/bash", "-c", release], log, timeout=60, cwd=build.app, env=build.env(**config)
    )
    print(f"\n{kind}: release: {release} -> exit 0 in {seconds:.1f} s")
    # Every deploy runs it again, on the database as the last release left it.
    seconds = run_logged(
        ["/bin/bash", "-c", release], log, timeout=60, cwd=build.app, env=build.env(**config)
    )
    print(f"{kind}: release again (the next deploy) -> exit 0 in {seconds:.1f} s")

    # 5. web dyno
    port = free_port()
    web = build.procfile["web"]
    started = time.monotonic()
    with log.open("a") as out:
        proc = subprocess.Popen(
            ["/bin/bash", "-c", web],
            cwd=build.app,
            env=build.env(**config, PORT=str(port)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        status, body = 0, ""
        while time.monotonic() - started < READY_TIMEOUT:
            assert proc.poll() is None, f"web exited {proc.returncode}:\n{log.read_text()[-4000:]}"
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            if status == 200:
                break
            time.sleep(0.2)
        ready = time.monotonic() - started
        assert status == 200, f"/readyz {status} {body} after {ready:.0f} s:\n{log.read_text()}"
        print(f"{kind}: web: {web} (PORT={port}) -> /readyz 200 {body.strip()} in {ready:.1f} s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            pytest.fail(f"web did not exit within 30 s of SIGTERM:\n{log.read_text()[-4000:]}")
    print(f"{kind}: SIGTERM -> exit {code}")
    assert code == 0, log.read_text()[-4000:]
