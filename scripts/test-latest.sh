#!/usr/bin/env bash
# The suite against the newest releases of the dependencies, in a virtualenv of its own
# (.venv-latest; .venv and constraints.txt are left alone), so that a breaking upgrade is seen here
# before users see it. Extra arguments go to pytest (default: the whole suite).
#
#   bash scripts/test-latest.sh [pytest args]                      # newest allowed by setup.cfg
#   LATEST=unbounded bash scripts/test-latest.sh [pytest args]     # and past its upper bounds
#
# Both install `-e .[test]` with `--upgrade --upgrade-strategy eager` and without -c
# constraints.txt: every dependency at its newest release within setup.cfg's bounds. With
# LATEST=unbounded, python-engineio, python-socketio and aiohttp (the libraries whose private API
# socketsvc/transport/patches use, capped in setup.cfg) are then upgraded to their newest releases
# whatever the caps say (`pip install -U` of the three, with their own dependencies; pip reports
# the broken cap of socketsvc, which is expected). There the patches whose tested range the
# release leaves are skipped with a warning (the stock code path runs), and the source-hash tests
# of tests/unit/socketsvc/transport/patches fail for the functions that changed: that is the
# signal to read the new source and retest before raising a cap (docs/operations.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
LATEST=${LATEST:-bounded}
venv=.venv-latest
if [ ! -x "$venv/bin/python" ]; then
  "$PYTHON" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]'
case "$LATEST" in
  bounded) ;;
  unbounded)
    "$venv/bin/python" -m pip install --quiet --upgrade python-engineio python-socketio aiohttp \
      || true  # pip exits 0 here; a resolver complaint about socketsvc's caps is expected
    ;;
  *) echo "LATEST must be bounded or unbounded, not $LATEST" >&2; exit 2 ;;
esac

echo "test-latest ($LATEST): $("$venv/bin/python" -m pip freeze --exclude-editable \
  | grep -iE '^(aiohttp|python-engineio|python-socketio|redis|sqlalchemy|marshmallow)==' \
  | tr '\n' ' ')" >&2
"$venv/bin/python" -m socketsvc.transport.patches >&2 || true

if [ ! -d node_modules/socket.io-client ]; then
  npm ci --no-audit --no-fund --loglevel=error || echo "warning: npm ci failed" >&2
fi
bash scripts/services.sh
exec "$venv/bin/pytest" -q "$@"
