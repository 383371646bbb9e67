"""The cost of a runtime database: `runtime_database()` enter plus exit, beside a raw psycopg connection.

    .venv/bin/python benchmarks/runtime.py [--rounds 15] [--per-round 20]

Variants, each timed per operation:

- runtime_database() enter + exit, no query: validate the keys (like="default"),
  render the entry, register the alias, remove it. No connection is opened.
- runtime_database() enter + exit, one query: the same, with `SELECT 1` through
  Django's connection for the alias (so a new server session, and its close).
- raw psycopg: connect + close: `psycopg.connect()` and `close()`, no Django.
- raw psycopg: connect + one query + close.

It also times `connections["default"]` (the lookup behind every query) with Django's
handler class and with the tracking subclass django.db.connections gets at the first
runtime alias, interleaved.

The variants run interleaved, `--per-round` operations of each in turn per round, so
background load falls on all of them alike. The table shows, per variant, the median
over the rounds of the per-operation time, and its ratio to a raw psycopg connection
with one query. The server is a throwaway PostgreSQL from tests/servers.py, reached
over TCP with SCRAM-SHA-256 password authentication.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REFERENCE = "raw psycopg: connect + query + close"


def configure_django(url: str, base_dir: str) -> None:
    import django
    from django.conf import settings

    from django_dbconfig import build_databases

    Path(base_dir, "dbconfig.json").write_text(
        json.dumps({"databases": {"default": {"url": url, "sslmode": "disable", "conn_max_age": 0}}})
    )
    settings.configure(DATABASES=build_databases(base_dir, environ={}), USE_TZ=True)
    django.setup()


def variants(server: object) -> dict[str, Callable[[], None]]:
    import psycopg
    from django.db import connections

    from django_dbconfig import runtime_database

    kwargs = server.connect_kwargs(sslmode="disable")  # type: ignore[attr-defined]

    def runtime_no_query() -> None:
        with runtime_database({}, like="default"):
            pass

    def runtime_one_query() -> None:
        with runtime_database({}, like="default") as alias, connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def raw_connect() -> None:
        psycopg.connect(**kwargs).close()

    def raw_query() -> None:
        with psycopg.connect(**kwargs) as conn:
            conn.execute("SELECT 1").fetchone()

    return {
        "runtime_database(): enter + exit": runtime_no_query,
        "runtime_database(): enter + query + exit": runtime_one_query,
        "raw psycopg: connect + close": raw_connect,
        REFERENCE: raw_query,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args(argv)

    from tests.servers import PostgresServer

    with PostgresServer() as server, tempfile.TemporaryDirectory() as base_dir:
        configure_django(server.url(), base_dir)
        runs = variants(server)
        for run in runs.values():  # warm up: imports, first connections
            for _ in range(3):
                run()
        samples: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(args.rounds):
            for label, run in runs.items():
                started = time.perf_counter()
                for _ in range(args.per_round):
                    run()
                samples[label].append((time.perf_counter() - started) / args.per_round)
        lookup_before, lookup_after = lookup_seconds()

    medians = {label: statistics.median(times) for label, times in samples.items()}
    reference = medians[REFERENCE]
    width = max(len(label) for label in medians)
    print(f"PostgreSQL over TCP, SCRAM; {args.rounds} rounds x {args.per_round} operations per variant")
    print(f"{'variant':<{width}}  {'median':>10}  {'vs raw query':>12}")
    for label, median in medians.items():
        print(f"{label:<{width}}  {median * 1e6:>7.0f} us  {median / reference:>11.3f}x")
    print(
        f'connections["default"]: {lookup_before * 1e9:.0f} ns with Django\'s handler class, '
        f"{lookup_after * 1e9:.0f} ns with the tracking subclass ({lookup_after / lookup_before:.2f}x)"
    )
    return 0


def lookup_seconds(number: int = 50_000, rounds: int = 9) -> tuple[float, float]:
    """Median time of `connections["default"]` (the lookup every query makes), without and
    with the tracking subclass, interleaved round by round."""
    import timeit

    from django.db import connections

    tracking_class = type(connections)
    plain_class = tracking_class.__bases__[1]  # (_TrackingMixin, Django's handler class)
    times: dict[type, list[float]] = {plain_class: [], tracking_class: []}
    try:
        for _ in range(rounds):
            for cls, samples in times.items():
                connections.__class__ = cls
                connections["default"]
                samples.append(timeit.timeit(lambda: connections["default"], number=number) / number)
    finally:
        connections.__class__ = tracking_class
    return statistics.median(times[plain_class]), statistics.median(times[tracking_class])


if __name__ == "__main__":
    sys.exit(main())
