#!/usr/bin/env bash
# The example project's main job on its embedded default (SQLite): create
# each alias's tables, prove the databases (dbcheck), then show every setting
# and its source (dbconfig).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd example_project
# Each app's tables on its own alias: shop on default, reports on analytics.
../.venv/bin/python manage.py migrate --database default -v 0
../.venv/bin/python manage.py migrate --database analytics -v 0
../.venv/bin/python manage.py dbcheck
../.venv/bin/python manage.py dbconfig
