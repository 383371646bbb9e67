"""The cost of a runtime database: `runtime_database()` enter plus exit, beside a raw psycopg connection.

    .venv/bin/python benchmarks/runtime.py [--rounds 15] [--per-round 20] [--part ops|scale|cycles|all]
        [--runs 3] [--cycles 5] [--cycle-size 1000] [--trim]

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

`--part scale` adds 100, 1,000 and 10,000 aliases one by one (like="default", no
connection) and removes them all, timing each operation: it prints the median
per-operation cost of the first and the last 1,000 (or all, below 1,000) and the
ratio last/first, for add and for remove.

`--part cycles` runs five cycles (`--cycles`) of: add 1,000 aliases, touch each (one
`SELECT 1`) from a pool of 16 threads that stays alive, remove them all from the main thread.
After each cycle (and a gc.collect()) it prints the live DatabaseWrapper and psycopg
Connection objects of runtime aliases, what the tracking module still holds, the process's
RSS, the memory the interpreter and the C allocator hold for live data (Python's allocated
blocks, glibc's bytes in use), the server's sessions, and the time the 1,000 removals took.
Each run is a fresh process (`--runs`, default 3), and every run is made twice, interleaved:
with glibc's defaults and with `MALLOC_ARENA_MAX=2`. The summary gives, per variant, the RSS
after the last cycle against the first cycle's in each run and their median. With `--trim`,
glibc's malloc_trim(0) runs after each cycle's reading and the RSS after it is shown too
(it hands free memory back, so it changes what later cycles read).

The variants run interleaved, `--per-round` operations of each in turn per round, so
background load falls on all of them alike. The table shows, per variant, the median
over the rounds of the per-operation time, and its ratio to a raw psycopg connection
with one query. The server is a throwaway PostgreSQL from tests/servers.py, reached
over TCP with SCRAM-SHA-256 password authentication.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
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
    parser.add_argument("--part", choices=("ops", "scale", "cycles", "all"), default="all")
    parser.add_argument("--cycle-size", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per variant (--part cycles)")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after each cycle's reading")
    parser.add_argument("--one-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part != "ops":
        from tests.servers import PostgresServer

        if args.part in ("scale", "all") or args.one_run:
            settings = {"max_connections": str(args.cycle_size + 100)}
            with PostgresServer(settings=settings) as server, tempfile.TemporaryDirectory() as base_dir:
                configure_django(server.url(), base_dir)
                if args.one_run:
                    cycles(server, args.cycle_size, args.cycles, trim=args.trim)
                    return 0
                scale()
        if args.part in ("cycles", "all"):
            cycle_runs(args)
        if args.part == "all":
            # Django is configured once per process: the per-operation variants run in another.
            return subprocess.call([sys.executable, __file__, "--part", "ops", *_rest(args)])
        return 0

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


def _rest(args: argparse.Namespace) -> list[str]:
    return ["--rounds", str(args.rounds), "--per-round", str(args.per_round)]


def scale() -> None:
    """Per-operation add and remove costs with 100, 1,000 and 10,000 aliases."""
    from django_dbconfig import add_database, remove_database

    print('add_database()/remove_database() one by one (like="default", no connection)')
    columns = ("add first", "add last", "ratio", "rm first", "rm last", "ratio")
    print(f"{'aliases':>8}  " + "  ".join(f"{name:>10}" for name in columns))
    for count in (100, 1_000, 10_000):
        names = [f"scale_{count}_{i}" for i in range(count)]
        adds, removes = [], []
        for name in names:
            started = time.perf_counter()
            add_database(name, {}, like="default")
            adds.append(time.perf_counter() - started)
        for name in names:
            started = time.perf_counter()
            remove_database(name)
            removes.append(time.perf_counter() - started)
        window = min(1_000, count)
        row = [count]
        for times in (adds, removes):
            first, last = statistics.median(times[:window]), statistics.median(times[-window:])
            row += [first, last, last / first]
        print(
            f"{row[0]:>8}  {row[1] * 1e6:>7.0f} us  {row[2] * 1e6:>7.0f} us  {row[3]:>9.2f}x  "
            f"{row[4] * 1e6:>7.0f} us  {row[5] * 1e6:>7.0f} us  {row[6]:>9.2f}x"
        )
    print(f"(first/last: medians of the first and last {1_000} operations, or of all below 1,000)")


# The allocator settings each run of --part cycles is made with (environment variables).
ALLOCATORS = {"glibc defaults": {}, "MALLOC_ARENA_MAX=2": {"MALLOC_ARENA_MAX": "2"}}
RESULT = "cycles result: "


def cycle_runs(args: argparse.Namespace) -> None:
    """`--runs` fresh processes per allocator setting, interleaved; the RSS of the last cycle
    against the first's in each, and their median."""
    import os

    command = [
        sys.executable,
        __file__,
        "--part",
        "cycles",
        "--one-run",
        "--cycles",
        str(args.cycles),
        "--cycle-size",
        str(args.cycle_size),
        *(["--trim"] if args.trim else []),
    ]
    results: dict[str, list[dict[str, list[float]]]] = {label: [] for label in ALLOCATORS}
    for run in range(1, args.runs + 1):
        for label, extra in ALLOCATORS.items():
            environ = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"}
            print(f"run {run}, {label} (load average {os.getloadavg()[0]:.1f}):", flush=True)
            done = subprocess.run(
                command, env={**environ, **extra}, capture_output=True, text=True, check=True
            )
            for line in done.stdout.splitlines():
                if line.startswith(RESULT):
                    results[label].append(json.loads(line[len(RESULT) :]))
                else:
                    print(f"  {line}", flush=True)
    last = args.cycles
    print(f"RSS after cycle {last} against cycle 1 ({args.runs} fresh processes per variant):")
    for label, runs in results.items():
        ratios = [run["rss"][-1] / run["rss"][0] for run in runs]
        figures = ", ".join(
            f"{run['rss'][0]:.1f} -> {run['rss'][-1]:.1f} MB ({ratio - 1:+.1%})"
            for run, ratio in zip(runs, ratios, strict=True)
        )
        print(f"  {label}: {figures}; median {statistics.median(ratios) - 1:+.1%}")
        live = [
            (run["python_blocks"][-1] / run["python_blocks"][0], run["c_heap"][-1] - run["c_heap"][0])
            for run in runs
        ]
        print(
            f"  {'':{len(label)}}  live data, cycle {last} against 1: Python's allocated blocks "
            + ", ".join(f"{blocks - 1:+.2%}" for blocks, _ in live)
            + "; glibc's bytes in use "
            + ", ".join(f"{heap:+.2f} MB" for _, heap in live)
        )


def cycles(server: object, size: int, count: int = 5, *, trim: bool = False) -> None:
    """`count` add/touch/remove cycles with 16 threads alive; what is left after each."""
    import gc
    from concurrent.futures import ThreadPoolExecutor

    import psycopg
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper

    from django_dbconfig import add_database, remove_database
    from django_dbconfig.runtime import tracking

    def touch(alias: str) -> None:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")

    def held() -> int:
        kept = getattr(tracking, "kept", None)
        if kept is not None:
            counts = kept()
            return int(counts["aliases"] + counts["objects"])
        # Before this change: the names and the weak sets of objects per name.
        made = getattr(tracking, "_made", {})
        return len(getattr(tracking, "_names", ())) + sum(len(found) for found in made.values())

    def sessions() -> int:
        rows = server.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")  # type: ignore[attr-defined]
        return int(rows[0][0])

    print(f"{count} cycles: add {size}, touch each from 16 threads (alive throughout), remove all")
    columns = (
        "wrappers",
        "psycopg",
        "tracked",
        "RSS MB",
        *(("trimmed",) if trim else ()),
        "py blocks",
        "C heap MB",
        "sessions",
        "remove s",
    )
    print("cycle  " + "  ".join(f"{name:>9}" for name in columns))
    found: dict[str, list[float]] = {"rss": [], "python_blocks": [], "c_heap": []}
    with ThreadPoolExecutor(16) as pool:
        for cycle in range(1, count + 1):
            names = [f"cycle_{cycle}_{i}" for i in range(size)]
            for name in names:
                add_database(name, {}, like="default")
            list(pool.map(touch, names))
            started = time.perf_counter()
            for name in names:
                remove_database(name)
            removing = time.perf_counter() - started
            del names
            gc.collect()
            objects = gc.get_objects()
            wrappers = sum(
                1
                for o in objects
                if issubclass(type(o), BaseDatabaseWrapper) and o.alias.startswith("cycle_")
            )
            drivers = sum(1 for o in objects if issubclass(type(o), psycopg.Connection))
            del objects
            rss, blocks, heap = rss_mb(), sys.getallocatedblocks(), c_heap_mb()
            found["rss"].append(rss)
            found["python_blocks"].append(blocks)
            found["c_heap"].append(heap)
            trimmed = f"{trimmed_rss_mb():>9.1f}  " if trim else ""
            print(
                f"{cycle:>5}  {wrappers:>9}  {drivers:>9}  {held():>9}  {rss:>9.1f}  {trimmed}{blocks:>9}  "
                f"{heap:>9.2f}  {sessions():>9}  {removing:>9.2f}",
                flush=True,
            )
    print(f"RSS after the threads ended: {rss_mb():.1f} MB; after malloc_trim(0): {trimmed_rss_mb():.1f} MB")
    print(RESULT + json.dumps(found))


def c_heap_mb() -> float:
    """Bytes glibc's allocator has handed out and not been given back (mallinfo2), in MB; NaN
    where there is no mallinfo2 (not glibc, or glibc before 2.33)."""
    import ctypes
    import ctypes.util

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    try:
        mallinfo2 = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return float("nan")
    mallinfo2.restype = MallInfo2
    info = mallinfo2()
    # In use: the main heap's and the thread arenas' allocated chunks plus mmapped ones.
    return int(info.uordblks + info.hblkhd) / 2**20


def trimmed_rss_mb() -> float:
    """RSS once the C allocator has handed its free memory back (glibc's malloc_trim)."""
    import ctypes
    import ctypes.util

    # Not glibc: nothing to trim, the same figure as RSS.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    return rss_mb()


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


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
