#!/usr/bin/env bash
# The example project's main job on its embedded default (SQLite):
# prove the databases (dbcheck), then show every setting and its source (dbconfig).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd example_project
../.venv/bin/python manage.py dbcheck
../.venv/bin/python manage.py dbconfig
