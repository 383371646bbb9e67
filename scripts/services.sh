#!/usr/bin/env bash
# Start the machine's PostgreSQL, MariaDB and Redis when they are not running.
# The tests' throwaway servers (TLS, replicas, restarts) start themselves.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

wait_for() {  # wait_for NAME COMMAND...: up to 30 s
    for _ in $(seq 1 60); do
        if "${@:2}" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "services: $1 did not come up" >&2
    return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "services: starting PostgreSQL" >&2
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
fi

if ! mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; then
    echo "services: starting MariaDB" >&2
    as_root start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd)"
    wait_for MariaDB mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -uroot ping
fi

# The Celery tests' broker (tests/test_celery.py): the machine's Redis, without persistence.
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }
if ! redis_up; then
    echo "services: starting Redis" >&2
    as_root mkdir -p /var/lib/redis /var/log/redis
    as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis redis_up
fi
