#!/usr/bin/env bash
# Lint: ruff (style), import-linter (the layer contracts in .importlinter), and the client pages'
# JavaScript (eslint, and tsc's checks of the `// @ts-check` modules) when node_modules is there.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports .importlinter
if [ -x node_modules/.bin/eslint ]; then
  node_modules/.bin/eslint client-demo tests/e2e docs/examples
fi
if [ -x node_modules/.bin/tsc ] && [ -f client-demo/jsconfig.json ]; then
  node_modules/.bin/tsc -p client-demo/jsconfig.json
fi
