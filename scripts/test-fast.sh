#!/usr/bin/env bash
# The edit-test loop (`make test-fast`): the unit tests and the integration tests on SQLite.
# No PostgreSQL (the `postgres` marker and the `[postgres]` parameter of `database_url`), no Node
# or browser (`e2e`), and not the few `slow` tests (fuzzing, SQLite outages, long races) that
# `make test` runs. Redis at 127.0.0.1:6379 is used when the pub/sub unit tests run.
# Extra arguments go to pytest (e.g. `-x`, `--durations=15`, a path).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s%N)
status=0
.venv/bin/pytest -q -p no:cacheprovider \
    -m "not postgres and not e2e and not slow" \
    -k "not postgres" \
    "$@" \
    tests/unit tests/integration || status=$?
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
printf 'test-fast: %d.%01d s elapsed\n' $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100))
exit "$status"
