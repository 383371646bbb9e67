#!/usr/bin/env bash
# The whole test suite: lint, strict types, the layering contracts (import-linter), and
# every test against real PostgreSQL and MariaDB servers. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
