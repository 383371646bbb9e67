"""Pools of many tenants, and a pooled alias while its server stops and comes back (PostgreSQL).

    .venv/bin/python benchmarks/pools.py [--tenants 250] [--load-seconds 5] [--idle-wait 0]

Tenants: `--tenants` runtime aliases with `pool: true` (add_database, like="default")
on a throwaway PostgreSQL. Counted: the process's threads and the server's sessions
of the app role, after each tenant ran one query (idle), while 16 threads run queries
on random tenants for `--load-seconds` (the peak, sampled every 10 ms), and, with
`--idle-wait`, that many seconds after the load stopped (an idle pool closes the
connections idle for its max_idle).

Server down: an alias with `pool: true` and `connect_timeout` 2s runs a query, its
server stops, and the next query is timed until it fails; then the server starts and
the first query is timed until it succeeds (then queries are retried every 50 ms).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOAD_THREADS = 16


def configure_django(url: str, base_dir: str) -> None:
    import django
    from django.conf import settings

    from django_dbconfig import build_databases

    Path(base_dir, "dbconfig.json").write_text(
        json.dumps({"databases": {"default": {"url": url, "sslmode": "disable", "connect_timeout": "2s"}}})
    )
    settings.configure(DATABASES=build_databases(base_dir, environ={}), USE_TZ=True)
    django.setup()


def query(alias: str) -> None:
    from django.db import close_old_connections, connections

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
    close_old_connections()  # as at a request's end: the connection goes back to its pool


def tenants(server: Any, args: argparse.Namespace) -> None:
    from django_dbconfig import add_database

    def sessions() -> int:
        rows = server.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (server.user,))
        return int(rows[0][0])

    aliases = [f"tenant_{n}" for n in range(args.tenants)]
    threads_before = threading.active_count()
    for alias in aliases:
        add_database(alias, {"pool": True}, like="default")
        query(alias)
    time.sleep(2)
    print(
        f"{args.tenants} tenants with pool: true, idle after one query each: "
        f"{threading.active_count() - threads_before} threads, {sessions()} server sessions",
        flush=True,
    )
    stop = time.monotonic() + args.load_seconds
    done = [0]
    lock = threading.Lock()

    def load() -> None:
        while time.monotonic() < stop:
            query(random.choice(aliases))  # noqa: S311 - picking a tenant, not a secret
            with lock:
                done[0] += 1

    workers = [threading.Thread(target=load) for _ in range(LOAD_THREADS)]
    peak_sessions = peak_threads = 0
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        peak_sessions = max(peak_sessions, sessions())
        peak_threads = max(peak_threads, threading.active_count() - threads_before - LOAD_THREADS)
        time.sleep(0.01)
    print(
        f"under load ({LOAD_THREADS} threads, {args.load_seconds} s, {done[0]} queries): peak "
        f"{peak_threads} pool threads, {peak_sessions} server sessions",
        flush=True,
    )
    if args.idle_wait:
        time.sleep(args.idle_wait)
        print(
            f"{args.idle_wait} s after the load: {threading.active_count() - threads_before} threads, "
            f"{sessions()} server sessions",
            flush=True,
        )


def server_down(server: Any) -> None:
    from django.db import OperationalError

    from django_dbconfig import add_database

    add_database("stopping", {"pool": True}, like="default")
    query("stopping")
    server.stop("fast")
    started = time.monotonic()
    try:
        query("stopping")
        print("the query succeeded with the server stopped?")
    except OperationalError as exc:
        message = str(exc)
    failed_after = time.monotonic() - started
    server.start()
    back = time.monotonic()
    first = None
    while True:
        try:
            query("stopping")
            break
        except OperationalError:
            first = first or time.monotonic() - back
            time.sleep(0.05)
    recovered_after = time.monotonic() - back
    print(f"server stopped: the pooled query failed after {failed_after:.2f} s: {message[:160]}")
    print(
        f"server back: a query succeeded after {recovered_after:.2f} s"
        + (f" (the first attempt failed after {first:.2f} s)" if first else " (the first attempt)")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=250)
    parser.add_argument("--load-seconds", type=float, default=5.0)
    parser.add_argument("--idle-wait", type=float, default=0.0)
    args = parser.parse_args()

    from tests.servers import PostgresServer

    # Enough for psycopg_pool's own defaults (4 connections per pool) on every tenant.
    max_connections = str(args.tenants * 4 + 50)
    with (
        PostgresServer(settings={"max_connections": max_connections}) as server,
        tempfile.TemporaryDirectory() as base_dir,
    ):
        configure_django(server.url(), base_dir)
        server_down(server)
        tenants(server, args)


if __name__ == "__main__":
    main()
