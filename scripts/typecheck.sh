#!/usr/bin/env bash
# mypy --strict over the package as it is installed: namespaces/ sits inside socketsvc/ there,
# so check a copy laid out the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree"
cp -r socketsvc "$tree/socketsvc"
rm -rf "$tree/socketsvc/namespaces" && cp -r namespaces "$tree/socketsvc/namespaces"
cd "$tree" && ../../.venv/bin/mypy --config-file ../../setup.cfg -p socketsvc
