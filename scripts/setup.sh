#!/usr/bin/env bash
# Prepare this machine for the project: system packages, the two database
# servers, and a virtualenv (.venv) with the package and its test tools.
# Safe to run again: each step does nothing when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# mysqlclient compiles against MariaDB Connector/C, found through pkg-config.
if ! { command -v pkg-config >/dev/null && pkg-config --exists libmariadb; }; then
    echo "setup: installing libmariadb-dev and pkg-config" >&2
    as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        libmariadb-dev pkg-config >/dev/null
fi

# The pooler tests start their own PgBouncer from Debian's package (never the
# system service: the package's own instance is left as it is).
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
    echo "setup: installing pgbouncer" >&2
    as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq pgbouncer >/dev/null
fi

# The lost-network tests put servers in network namespaces (ip, from iproute2) and drop
# their packets (iptables); the ASGI test drives uvicorn with ab (apache2-utils); the
# Celery tests use Redis as their broker (redis-server, started by scripts/services.sh).
missing=()
has() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
has ip || missing+=(iproute2)
has iptables || missing+=(iptables)
has ab || missing+=(apache2-utils)
has redis-server || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        "${missing[@]}" >/dev/null
fi

# The GeoDjango tests (tests/test_gis_*.py) run a throwaway PostgreSQL with the PostGIS
# extension of the newest installed server version, and GeoDjango loads GDAL, GEOS and
# PROJ. Package names differ between Debian releases (libgeos-c1v5 / libgeos-c1t64):
# the first one apt knows is installed.
first_known() { for name in "$@"; do apt-cache show "$name" >/dev/null 2>&1 && { echo "$name"; return; }; done; }
pg_major="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)"
gis=()
if [ -n "$pg_major" ] && [ ! -f "/usr/share/postgresql/$pg_major/extension/postgis.control" ]; then
    gis+=("postgresql-$pg_major-postgis-3")
fi
ldconfig -p | grep -q 'libgdal\.so' || gis+=(gdal-bin)
ldconfig -p | grep -q 'libgeos_c\.so' || gis+=(geos)
if [ "${#gis[@]}" -gt 0 ]; then
    echo "setup: installing PostGIS and GeoDjango's libraries" >&2
    as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
    packages=()
    for package in "${gis[@]}"; do
        if [ "$package" = geos ]; then
            package="$(first_known libgeos-c1t64 libgeos-c1v5)"
        fi
        [ -n "$package" ] && packages+=("$package")
    done
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        "${packages[@]}" >/dev/null
fi

# The Galera suite (scripts/galera-suite.sh) runs three throwaway mariadbd nodes with
# Debian's Galera provider; joining nodes copy the first one's data with rsync (SST).
if [ ! -f /usr/lib/galera/libgalera_smm.so ] || ! command -v rsync >/dev/null; then
    echo "setup: installing galera-4 and rsync" >&2
    as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
        galera-4 rsync >/dev/null
fi

# The Patroni suite (scripts/patroni-suite.sh) runs its own etcd, three Patroni nodes and an
# HAProxy on loopback ports. Debian's packaged services are not used: whatever the packages
# started is stopped and kept from starting again.
if [ "${DBCONFIG_PATRONI:-}" = 1 ]; then
    patroni_missing=()
    has patroni || patroni_missing+=(patroni)
    has etcd || patroni_missing+=(etcd-server)
    has etcdctl || patroni_missing+=(etcd-client)
    has haproxy || patroni_missing+=(haproxy)
    if [ "${#patroni_missing[@]}" -gt 0 ]; then
        echo "setup: installing ${patroni_missing[*]}" >&2
        as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
            --no-install-recommends "${patroni_missing[@]}" >/dev/null
        for service in etcd haproxy patroni; do
            if [ -x "/etc/init.d/$service" ]; then
                as_root "/etc/init.d/$service" stop >/dev/null 2>&1 || true
                as_root update-rc.d "$service" disable >/dev/null 2>&1 || true
            fi
        done
    fi
fi

bash scripts/services.sh

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the project's requirements changed since the last install.
stamp=.venv/.dbconfig-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    touch "$stamp"
fi
