#!/usr/bin/env bash
# Django's own test suite (the modules about connections, transactions, requests
# and async) against the shared PostgreSQL and MariaDB, with this project's engines
# and with Django's; fails when a test fails with ours and passes with Django's.
# Extra arguments go to scripts/django_suite (e.g. --only mariadb, or module names).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python -m django_suite "$@"
