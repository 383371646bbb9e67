#!/usr/bin/env bash
# The Patroni suite: a real three-node Patroni cluster (etcd, PostgreSQL 15) with HAProxy in
# front, started on loopback ports, and writes and reads under load through a planned
# switchover and a failover (tests/test_patroni.py, marker `patroni`). Installs Debian's
# patroni, etcd-server, etcd-client and haproxy when missing (their packaged services are
# stopped, never used). Prints the figures of each configuration. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
DBCONFIG_PATRONI=1 bash scripts/setup.sh
exec .venv/bin/python -m pytest -m patroni -s -p no:logging tests/test_patroni.py "$@"
