#!/usr/bin/env bash
# The whole suite: lint, types, then every test (unit, integration, Node and browser e2e) on
# SQLite and PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/services.sh
bash scripts/lint.sh
bash scripts/typecheck.sh
# The slowest tests are listed at the end: where the time goes when the suite nears its budget.
exec .venv/bin/pytest -q --durations=30 "$@"
