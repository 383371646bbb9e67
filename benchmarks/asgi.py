"""Connections held by an ASGI server under load, with each connection strategy (PostgreSQL),
and the defaults under a threaded WSGI server against persistent connections.

    .venv/bin/python benchmarks/asgi.py [--requests 600] [--concurrency 20] [--max-connections 30]
        [--rounds 3] [--only asgi|wsgi]

ASGI: uvicorn (one worker) serves a project whose view runs one query; ab sends
`--requests` requests, `--concurrency` at a time. A throwaway PostgreSQL with
`--max-connections` counts the app's connections (pg_stat_activity, sampled every
10 ms): the peak during the load, the distinct server sessions seen (how often the
app connected), and what is left 1 to 5 s after it stopped. Each strategy runs with
Python's garbage collector on (as in production) and off (what closes is then
closed by code, not freed by a collection). The ratio lines serve the defaults and
`pool: true` side by side (two uvicorn processes loaded by two ab at once, so load on the
machine falls on both alike), `--rounds` times, median of the paired ratios.

WSGI: gunicorn (one worker, 8 threads) serves the same project, ab at concurrency 8;
the defaults are paired with persistent connections without health checks the same way
(two gunicorn processes at once).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULTS = "build_databases() defaults"
POOL = "pool: true"
PERSISTENT = "persistent, no health checks"
WSGI_THREADS = 8


def variants(server: Any) -> list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]]:
    """(label, dbconfig.json, DATABASES written as is) for each strategy."""
    url = server.url()
    django_own = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": server.host,
        "PORT": server.port,
        "NAME": server.dbname,
        "USER": server.user,
        "PASSWORD": server.password,
    }
    return [
        (DEFAULTS, {"databases": {"default": {"url": url}}}, None),
        ("Django's engine, CONN_MAX_AGE=60", None, {"default": {**django_own, "CONN_MAX_AGE": 60}}),
        ("Django's stock settings (CONN_MAX_AGE=0)", None, {"default": django_own}),
        (POOL, {"databases": {"default": {"url": url, "pool": True}}}, None),
        (
            PERSISTENT,
            {"databases": {"default": {"url": url, "pool": False, "conn_health_checks": False}}},
            None,
        ),
    ]


def run(server: Any, variant: tuple[str, Any, Any], args: argparse.Namespace, **load: Any) -> Any:
    from tests.asgi_load import serve_and_load, write_project

    label, dbconfig, databases = variant
    with tempfile.TemporaryDirectory() as tmp:
        root = write_project(Path(tmp), dbconfig=dbconfig, databases=databases)
        result = serve_and_load(server, root, label=label, requests=args.requests, **load)
    # Let the server end what a variant left behind before the next one.
    server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (server.user,))
    return result


def paired_ratio(
    server: Any, ours: Any, baseline: Any, args: argparse.Namespace, **load: Any
) -> tuple[float, list[float], list[float]]:
    """Median over `--rounds` of ours/baseline requests/s, the two served and loaded at the same time."""
    from tests.asgi_load import load_side_by_side, write_project

    ratios, mine, theirs = [], [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as first, tempfile.TemporaryDirectory() as second:
            roots = [
                write_project(Path(folder), dbconfig=variant[1], databases=variant[2])
                for folder, variant in ((first, ours), (second, baseline))
            ]
            (rate, failed), (base_rate, base_failed) = load_side_by_side(
                roots, requests=args.requests, **load
            )
        if failed or base_failed:
            print(f"  failed requests: {ours[0]} {failed}, {baseline[0]} {base_failed}")
        server.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (server.user,)
        )
        mine.append(rate)
        theirs.append(base_rate)
        ratios.append(rate / base_rate)
    return statistics.median(ratios), mine, theirs


def row(label: str, gc: str, result: Any) -> str:
    failed = result.failed + result.non_2xx
    return (
        f"{label:<42} {gc:<4} {failed:>7} {result.requests_per_s:>7.0f} {result.peak:>5} "
        f"{result.sessions:>9}  {result.after}"
    )


def mariadb(args: argparse.Namespace) -> None:
    """MariaDB has no pool: the defaults under uvicorn (a connection per request) beside the same
    project under gunicorn with threads (persistent connections), and beside Django's stock
    settings under uvicorn, each pair served and loaded at the same time."""
    from tests.asgi_load import load_side_by_side, write_project
    from tests.servers import MariaDBServer

    print(
        f"MariaDB: {args.requests} requests, {WSGI_THREADS} at a time per server; pairs served side by side\n"
    )
    with MariaDBServer() as server:
        url = server.url().replace("mysql://", "mariadb://", 1)
        defaults = {"databases": {"default": {"url": url}}}
        stock = {
            "default": {
                "ENGINE": "django.db.backends.mysql",
                "HOST": server.host,
                "PORT": server.port,
                "NAME": server.dbname,
                "USER": server.user,
                "PASSWORD": server.password,
            }
        }
        pairs = [
            (
                "uvicorn, defaults / gunicorn threads, defaults (persistent)",
                (defaults, None),
                (defaults, None),
                [0, 8],
            ),
            ("uvicorn, defaults / uvicorn, Django's stock settings", (defaults, None), (None, stock), [0, 0]),
        ]
        for label, first, second, threads in pairs:
            ratios, mine, theirs = [], [], []
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                    roots = [
                        write_project(Path(folder), dbconfig=dbconfig, databases=databases)
                        for folder, (dbconfig, databases) in ((a, first), (b, second))
                    ]
                    (rate, failed), (base, base_failed) = load_side_by_side(
                        roots, requests=args.requests, concurrency=WSGI_THREADS, wsgi_threads=threads
                    )
                if failed or base_failed:
                    print(f"  failed requests: {failed} / {base_failed}")
                mine.append(rate)
                theirs.append(base)
                ratios.append(rate / base)
            print(
                f"{label}: {statistics.median(ratios):.2f}x (median of {args.rounds} pairs; req/s "
                f"{[round(r) for r in mine]} / {[round(r) for r in theirs]})",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--max-connections", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("asgi", "wsgi", "mariadb"))
    args = parser.parse_args()

    from tests.servers import PostgresServer

    if args.only == "mariadb":
        mariadb(args)
        return

    columns = f"{'failed':>7} {'req/s':>7} {'peak':>5} {'sessions':>9}"
    header = f"{'strategy':<42} {'gc':<4} {columns}  left after 1..5 s"
    with PostgresServer(settings={"max_connections": str(args.max_connections)}) as server:
        every = {variant[0]: variant for variant in variants(server)}
        if args.only != "wsgi":
            print(
                f"ASGI: {args.requests} requests, {args.concurrency} at a time; PostgreSQL "
                f"max_connections {args.max_connections}; uvicorn, 1 worker\n"
            )
            print(header)
            print("-" * len(header))
            for variant in every.values():
                for gc_off in (False, True):
                    result = run(server, variant, args, concurrency=args.concurrency, gc_off=gc_off)
                    print(row(variant[0], "off" if gc_off else "on", result), flush=True)
            for gc_off in (False, True):
                ratio, mine, theirs = paired_ratio(
                    server, every[DEFAULTS], every[POOL], args, concurrency=args.concurrency, gc_off=gc_off
                )
                print(
                    f"defaults / pool: true, gc {'off' if gc_off else 'on'}: {ratio:.2f}x (median of "
                    f"{args.rounds} pairs; req/s {[round(r) for r in mine]} / {[round(r) for r in theirs]})",
                    flush=True,
                )
        if args.only != "asgi":
            print(
                f"\nWSGI: {args.requests} requests, {WSGI_THREADS} at a time; gunicorn, 1 worker, "
                f"{WSGI_THREADS} threads\n"
            )
            print(header)
            print("-" * len(header))
            wsgi = {"concurrency": WSGI_THREADS, "wsgi_threads": WSGI_THREADS, "gc_off": False}
            for label in (DEFAULTS, PERSISTENT):
                print(row(label, "on", run(server, every[label], args, **wsgi)), flush=True)
            ratio, mine, theirs = paired_ratio(server, every[DEFAULTS], every[PERSISTENT], args, **wsgi)
            print(
                f"defaults / persistent without checks: {ratio:.2f}x (median of {args.rounds} pairs; "
                f"req/s {[round(r) for r in mine]} / {[round(r) for r in theirs]})",
                flush=True,
            )
            # The same settings under both servers: what ASGI costs with the pool, for comparison
            # with MariaDB's (--only mariadb), whose ASGI requests each connect.
            both = {"concurrency": WSGI_THREADS, "wsgi_threads": [0, WSGI_THREADS], "gc_off": False}
            ratio, mine, theirs = paired_ratio(server, every[DEFAULTS], every[DEFAULTS], args, **both)
            print(
                f"defaults under uvicorn / under gunicorn threads: {ratio:.2f}x (median of {args.rounds} "
                f"pairs; req/s {[round(r) for r in mine]} / {[round(r) for r in theirs]})",
                flush=True,
            )


if __name__ == "__main__":
    main()
