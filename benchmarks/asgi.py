"""Connections held by an ASGI server under load, with each connection strategy (PostgreSQL).

    .venv/bin/python benchmarks/asgi.py [--requests 600] [--concurrency 20] [--max-connections 30]

uvicorn (one worker) serves a project whose view runs one query; ab sends
`--requests` requests, `--concurrency` at a time. A throwaway PostgreSQL with
`--max-connections` counts the app's connections (pg_stat_activity, sampled every
10 ms): the peak during the load, and what is left 1 to 5 s after it stopped. Each
strategy runs with Python's garbage collector on (as in production) and off (what
closes is then closed by code, not freed by a collection).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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
        ("build_databases() defaults", {"databases": {"default": {"url": url}}}, None),
        ("Django's engine, CONN_MAX_AGE=60", None, {"default": {**django_own, "CONN_MAX_AGE": 60}}),
        ("Django's stock settings (CONN_MAX_AGE=0)", None, {"default": django_own}),
        ("pool: true", {"databases": {"default": {"url": url, "pool": True}}}, None),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--max-connections", type=int, default=30)
    args = parser.parse_args()

    from tests.asgi_load import serve_and_load, write_project
    from tests.servers import PostgresServer

    print(
        f"{args.requests} requests, {args.concurrency} at a time; PostgreSQL max_connections "
        f"{args.max_connections}; uvicorn, 1 worker\n"
    )
    header = f"{'strategy':<42} {'gc':<4} {'failed':>7} {'req/s':>7} {'peak':>5}  left after 1..5 s"
    print(header)
    print("-" * len(header))
    with PostgresServer(settings={"max_connections": str(args.max_connections)}) as server:
        for label, dbconfig, databases in variants(server):
            for gc_off in (False, True):
                with tempfile.TemporaryDirectory() as tmp:
                    root = write_project(Path(tmp), dbconfig=dbconfig, databases=databases)
                    result = serve_and_load(
                        server,
                        root,
                        label=label,
                        requests=args.requests,
                        concurrency=args.concurrency,
                        gc_off=gc_off,
                    )
                failed = result.failed + result.non_2xx
                print(
                    f"{label:<42} {'off' if gc_off else 'on':<4} {failed:>7} "
                    f"{result.requests_per_s:>7.0f} {result.peak:>5}  {result.after}",
                    flush=True,
                )
                # Let the server end what a variant left behind before the next one.
                server.psql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (server.user,),
                )


if __name__ == "__main__":
    main()
