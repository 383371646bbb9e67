"""CPU time of the engine's own work per request cycle, the query itself left out (PostgreSQL).

    .venv/bin/python benchmarks/request_path.py [--rounds 21] [--cycles 2000]

The request cycle of benchmarks/requests.py (`request_started`, a cursor, one
`SELECT 1` and its fetch, `request_finished`) for each variant of its PostgreSQL
table, on one throwaway server, with the driver's execute and fetch answering at
once: what remains is what Django and the engine do around a query (signals,
connection handling, the health check, error wrappers, a pool's checkout). It is
the part an engine can change, and the part the elapsed-time ratios of
benchmarks/requests.py measure through the noise of the server round trip and of
a shared machine. Django's health checks send their `SELECT 1` through the same
shortcut: their row shows only the Python around that query, not its round trip.

Time is the thread's CPU time (`time.thread_time`), so waiting for a core under
load does not count. The variants take turns, `--cycles` cycles each, `--rounds`
times; the table shows the median microseconds per cycle and, per variant, the
median of its per-round difference from persistent connections without checks.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_cycles() -> Any:
    """benchmarks/requests.py, beside this file (by path: `requests` is also a PyPI name)."""
    spec = importlib.util.spec_from_file_location("request_cycles", ROOT / "benchmarks" / "requests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def answer_at_once() -> None:
    """psycopg's execute and fetchone without the server: the query's cost leaves the cycle."""
    import psycopg

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        return self

    psycopg.Cursor.execute = execute  # type: ignore[method-assign,assignment]
    psycopg.ClientCursor.execute = execute  # type: ignore[method-assign,assignment]
    psycopg.Cursor.fetchone = lambda self: (1,)  # type: ignore[method-assign,assignment,return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="rounds (medians are taken)")
    parser.add_argument("--cycles", type=int, default=2000, help="cycles per variant and round")
    args = parser.parse_args(argv)

    from tests.servers import PostgresServer

    cycles = load_cycles()
    print("starting a throwaway PostgreSQL server...", file=sys.stderr)
    with PostgresServer(tls=True) as server:
        listed = cycles.variants_for(server, "django.db.backends.postgresql", pool=True, tls=False)
        # Django's stock settings connect per request: the server's work, not the engine's.
        variants = {
            f"path_{i}": v
            for i, v in enumerate(listed)
            if v.settings["CONN_MAX_AGE"] or v.settings["OPTIONS"].get("pool")
        }
        cycles.configure_django(variants)
        aliases = list(variants)
        bench = cycles.Bench(aliases)  # connects and warms each variant with real queries
        answer_at_once()
        spent: dict[str, list[float]] = {alias: [] for alias in aliases}
        try:
            for index in range(args.rounds):
                for alias in aliases:
                    with bench.visible(alias):
                        start = time.thread_time_ns()
                        for _ in range(args.cycles):
                            bench.cycle(alias)
                        spent[alias].append((time.thread_time_ns() - start) / args.cycles / 1000)
                print(f"  round {index + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            bench.close()
    by_label = {variant.label: alias for alias, variant in variants.items()}
    baseline = spent[by_label[cycles.PERSISTENT_VARIANT]]
    width = max(len(variant.label) for variant in variants.values())
    print(
        f"PostgreSQL, the engine's work per request cycle (query answered at once); "
        f"CPU µs, median of {args.rounds} rounds of {args.cycles} cycles"
    )
    print(f"  {'configuration':<{width}}  {'µs/cycle':>9}  {'vs persistent, no checks':>25}")
    for alias, values in spent.items():
        added = statistics.median(a - b for a, b in zip(values, baseline, strict=True))
        print(f"  {variants[alias].label:<{width}}  {statistics.median(values):>9.2f}  {added:>+24.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
