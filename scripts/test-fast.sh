#!/usr/bin/env bash
# The edit-test loop (`make test-fast`): the unit tests and the integration tests on SQLite.
# No PostgreSQL (the `postgres` marker and the `[postgres]` parameter of `database_url`), no Node
# or browser (`e2e`), and not the few `slow` tests (fuzzing, SQLite outages, long races) that
# `make test` runs. Redis at 127.0.0.1:6379 is used when the pub/sub unit tests run.
# Extra arguments go to pytest (e.g. `-x`, `--durations=15`, a path).
set -euo pipefail
cd "$(dirname "$0")/.."
# Slow tests in files whose owners have not marked them `slow` yet (each over 1.5 s: processes
# of the CLI, a ping timeout waited out).
SLOW_ELSEWHERE=(
    --deselect tests/unit/socketsvc/test_cli.py::test_token_help_lists_agent_and_its_options
    --deselect tests/unit/socketsvc/test_cli.py::test_settings_prints_the_declarations_without_reading_them
    --deselect tests/unit/socketsvc/test_cli.py::test_help_describes_the_commands_and_the_environment
    --deselect tests/unit/socketsvc/transport/test_server.py::test_a_client_that_stops_answering_pings_is_closed_after_interval_plus_timeout
)
started=$(date +%s%N)
status=0
.venv/bin/pytest -q -p no:cacheprovider \
    -m "not postgres and not e2e and not slow" \
    -k "not postgres" \
    "${SLOW_ELSEWHERE[@]}" \
    "$@" \
    tests/unit tests/integration || status=$?
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
printf 'test-fast: %d.%01d s elapsed\n' $((elapsed_ms / 1000)) $((elapsed_ms % 1000 / 100))
exit "$status"
