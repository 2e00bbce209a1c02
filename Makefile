.PHONY: run test test-fast test-latest lint typecheck bench clean

# Install into .venv and serve on http://localhost:8080/ (SQLite, no Redis).
run:
	bash scripts/bootstrap.sh run
	.venv/bin/socketsvc

# Everything CI runs: lint, types, and all tests (starts PostgreSQL and Redis when absent).
test:
	bash scripts/test.sh

# The edit-test loop: unit tests and the SQLite integration tests (no PostgreSQL, Node or browser).
test-fast:
	bash scripts/test-fast.sh

# The whole suite against the newest releases of every dependency (not the constraints file),
# in its own virtualenv: a breaking upgrade shows here before users see it.
test-latest:
	bash scripts/test-latest.sh

# Python style, import contracts (the layers), JavaScript lint and type checks.
lint:
	bash scripts/lint.sh

typecheck:
	bash scripts/typecheck.sh

clean:
	rm -rf build .venv .venv-latest node_modules .pytest_cache .mypy_cache .ruff_cache artifacts
