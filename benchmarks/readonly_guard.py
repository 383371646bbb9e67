"""Cost of the read-only guard's check for statements that lift read-only mode.

    .venv/bin/python benchmarks/readonly_guard.py [--rounds 15] [--number 100000] [--cycles 2000]

The guard is the execute wrapper a `read_only` alias or a replica gets (the machine's
PostgreSQL and MariaDB, as read-only aliases of build_databases()). Before it read
statements, it was a `try` around the call (`writes only` below: the same path, with
the refusal of a write handled in the `except`). Both wrap an `execute` that does
nothing, so the figures are the wrappers' own cost, per statement, in nanoseconds: the
median over the rounds, the variants interleaved in each round so that background load
falls on all of them alike.

The statements: a short ORM query, a long one (2.4 kB), an INSERT, and a query with
columns `read_at` and `last_write` (it has the words `read` and `write` the guard looks
for, so it is read token by token: the worst case of an ordinary statement).

Then a request cycle as benchmarks/requests.py runs it (`request_started`, one
`SELECT 1` through the alias's persistent connection, `request_finished`), on the
same connection with each wrapper in turn: the median of the paired ratio of the cycle
times, and the added cost of the check on the short query as a share of one cycle.
The target is under 1%.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHORT = (
    'SELECT "reports_dailytotal"."id", "reports_dailytotal"."day", "reports_dailytotal"."total" '
    'FROM "reports_dailytotal" WHERE "reports_dailytotal"."id" = %s LIMIT 21'
)
LONG = SHORT.removesuffix(" LIMIT 21") + "".join(
    f' AND "reports_dailytotal"."col{i}" = %s' for i in range(60)
)
INSERT = (
    'INSERT INTO "reports_dailytotal" ("day", "total") VALUES (%s, %s) RETURNING "reports_dailytotal"."id"'
)
WORDS = (
    'SELECT "docs_page"."id", "docs_page"."read_at", "docs_page"."last_write" FROM "docs_page" WHERE id = %s'
)
STATEMENTS = {
    "short ORM query": SHORT,
    "long ORM query": LONG,
    "INSERT": INSERT,
    "columns read_at, last_write": WORDS,
}


def setup_django(directory: Path) -> None:
    import django
    from django.conf import settings

    from django_dbconfig import build_databases

    databases = build_databases(
        directory,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": ":memory:"},
                "postgresql": {"url": "postgresql://postgres@127.0.0.1:5432/test", "read_only": True},
                "mariadb": {"url": "mariadb://root@127.0.0.1:3306/test", "read_only": True},
            }
        },
    )
    settings.configure(SECRET_KEY="benchmark-only", INSTALLED_APPS=["django_dbconfig"], DATABASES=databases)
    django.setup()


def nothing(sql: str, params: Any, many: bool, context: Any) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds (the median is shown)")
    parser.add_argument(
        "--number", type=int, default=100_000, help="calls per wrapper and statement per round"
    )
    parser.add_argument("--cycles", type=int, default=2_000, help="request cycles per wrapper per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        setup_django(Path(directory))
    from django.core import signals
    from django.db import DatabaseError, connections

    from django_dbconfig.routers import connect_signals

    connect_signals()
    print(f"Python {sys.version.split()[0]}; {args.rounds} rounds; medians\n")
    for alias in ("postgresql", "mariadb"):
        connection = connections[alias]
        try:
            connection.ensure_connection()
        except DatabaseError as exc:
            print(f"{alias}: not reachable ({type(exc).__name__}), skipped\n")
            continue
        guard = connection.execute_wrappers[0]
        refused = guard.refused

        def writes_only(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            # The guard before it read statements: a try around the call.
            try:
                return execute(sql, params, many, context)
            except DatabaseError as exc:
                if not refused(exc.__cause__):  # noqa: B023
                    raise
                raise

        wrappers = {"writes only (before)": writes_only, "guard (now)": guard}
        calls: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for name, sql in STATEMENTS.items():
                for label, wrapper in wrappers.items():
                    call = functools.partial(wrapper, nothing, sql, None, False, {})
                    seconds = timeit.timeit(call, number=args.number)
                    calls.setdefault((name, label), []).append(seconds / args.number * 1e9)
        cycles: dict[str, list[float]] = {label: [] for label in wrappers}
        ratios = []
        for _ in range(args.rounds):
            per_cycle = {}
            for label, wrapper in wrappers.items():
                connection.execute_wrappers[0] = wrapper
                start = time.perf_counter()
                for _ in range(args.cycles):
                    signals.request_started.send(sender=None)
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT 1")
                        cursor.fetchone()
                    signals.request_finished.send(sender=None)
                per_cycle[label] = (time.perf_counter() - start) / args.cycles * 1e9
                cycles[label].append(per_cycle[label])
            ratios.append(per_cycle["guard (now)"] / per_cycle["writes only (before)"])
        connection.execute_wrappers[0] = guard

        print(f"{alias}: ns per statement through the wrapper")
        print(f"  {'statement':<26}{'before':>10}{'now':>10}{'added':>10}")
        for name in STATEMENTS:
            before = statistics.median(calls[(name, "writes only (before)")])
            now = statistics.median(calls[(name, "guard (now)")])
            print(f"  {name:<26}{before:>10.0f}{now:>10.0f}{now - before:>10.0f}")
        cycle = statistics.median(cycles["writes only (before)"])
        added = statistics.median(calls[("short ORM query", "guard (now)")]) - statistics.median(
            calls[("short ORM query", "writes only (before)")]
        )
        now = statistics.median(cycles["guard (now)"])
        print(
            f"  request cycle: {cycle / 1000:.1f} us before, {now / 1000:.1f} us now; "
            f"paired ratio now/before {statistics.median(ratios):.3f}"
        )
        share = added / cycle
        print(f"  the check on a short ORM query: {added:.0f} ns = {share:.2%} of a cycle (target < 1%)\n")
        connection.close()


if __name__ == "__main__":
    main()
