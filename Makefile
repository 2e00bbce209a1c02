.PHONY: run test lint typecheck bench clean

# Install into .venv and serve on http://localhost:8080/ (SQLite, no Redis).
run:
	bash scripts/bootstrap.sh run
	.venv/bin/socketsvc

# Everything CI runs: lint, types, and all tests (starts PostgreSQL and Redis when absent).
test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

typecheck:
	bash scripts/typecheck.sh

clean:
	rm -rf build .venv node_modules .pytest_cache .mypy_cache .ruff_cache artifacts
