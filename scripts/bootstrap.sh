#!/usr/bin/env bash
# Create .venv and install socketsvc into it (editable), every dependency at the version pinned in
# constraints.txt (what CI tests; `make test-latest` tries the newest releases instead). With
# "test": also the test tools, the npm packages (socket.io-client, playwright-core) and Debian's
# chromium when missing. A change to setup.cfg, pyproject.toml or constraints.txt reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.socketsvc-installed-$(cat setup.cfg pyproject.toml constraints.txt | sha1sum | cut -c1-12)-${1:-run}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  if [ "${1:-}" = "test" ]; then
    .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[test]'
  else
    .venv/bin/python -m pip install --quiet -c constraints.txt -e .
  fi
  touch "$stamp"
fi

if [ "${1:-}" = "test" ]; then
  if [ ! -d node_modules/socket.io-client ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)        # browser tests (Playwright)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)  # sticky LB tests
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "installing Debian packages for the tests: ${missing[*]}" >&2
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "warning: missing ${missing[*]}; the tests that need them will be skipped" >&2
    fi
  fi
fi
