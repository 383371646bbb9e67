#!/usr/bin/env bash
# The Galera suite: a real three-node Galera cluster (the machine's MariaDB mariadbd with
# Debian's galera-4, joined by rsync) on loopback ports, driven through the project's
# configuration: causal reads on and off, dbcheck's report of each node, a node killed
# under load. About a minute; not part of scripts/test.sh. -s prints the figures measured.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -m galera -s tests/test_galera.py "$@"
