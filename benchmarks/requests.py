"""Request cycles per second with each connection strategy, on PostgreSQL and MariaDB.

    .venv/bin/python benchmarks/requests.py [--rounds 15] [--seconds 2]
        [--only postgresql|mariadb|pgbouncer] [--transport tcp|tls]

A request cycle is what Django does around a view that runs one query:
`request_started`, one `SELECT 1` through the Django connection, `request_finished`.

The variants run side by side: each round gives every variant the same share of
`--seconds`, handed out in slices of a few milliseconds in turn, so a burst of
background load on the machine falls on all of them alike. Only the variant whose
slice it is has its connection visible to Django, since the request signals visit
every open connection. The table shows, per variant, the median over the rounds
of requests/s and the ratio to the fastest; the last line is the median over the
rounds of the paired ratio that the target is about. The CPU column is the time
this process's thread spent per request (`time.thread_time`: its own work and the
driver's, not the server's, and not the time it waited for a core), median over the
rounds; the paired lines add the median per-round difference. On a machine shared
with other work the ratios move by several hundredths from run to run, while the
CPU figures move by tenths of a microsecond: they show what a change in the
engine's per-request path costs.

The PgBouncer section compares, on one throwaway PostgreSQL, persistent connections
straight to the server with the same through a throwaway PgBouncer in transaction mode
(tests/pgbouncer.py), and new connections per request both ways.

The servers are throwaway ones from tests/servers.py, reached over TCP with password
authentication (SCRAM-SHA-256 on PostgreSQL, mysql_native_password on MariaDB),
as a production application reaches its database: once without TLS and once with
verified TLS, a table each. On PostgreSQL, Django's pool (psycopg_pool) runs with
and without health checks, beside build_databases() with `pool: true`, whose
engine checks each checkout on the socket.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_VARIANT = "build_databases() default"
PERSISTENT_VARIANT = "persistent, no health checks"
POOL_VARIANT = "pool (Django 5.1+), no checks"
POOL_CHECKS_VARIANT = "pool, Django's health checks"
OUR_POOL_VARIANT = "build_databases() pool: true"
TARGET = 0.95
# Long enough for several persistent cycles (and one new connection), short enough
# that a variant never runs alone through a burst of load.
SLICE_SECONDS = 0.005
WARMUP_CYCLES = 20


# Per alias, one value per round.
Results = dict[str, list[float]]


@dataclass(frozen=True)
class Variant:
    """One way of configuring the connection: a label and its DATABASES entry."""

    label: str
    settings: dict[str, Any]


def tls_variables(server: Any, tls: bool) -> dict[str, str]:
    """TLS off, or verified TLS (verify-full against the throwaway CA)."""
    if not tls:
        return {"DBCONFIG_DEFAULT_SSLMODE": "disable"}
    return {"DBCONFIG_DEFAULT_SSLMODE": "verify-full", "DBCONFIG_DEFAULT_SSLROOTCERT": str(server.ca_path)}


def variants_for(server: Any, engine: str, *, pool: bool, tls: bool) -> list[Variant]:
    """Django's own engine configured several ways, and what build_databases() renders.

    Every variant starts from the same rendered settings (TLS options included), so
    the engine and the connection strategy are the only differences.
    """
    from django_dbconfig import build_databases

    # mariadb:// for MariaDB: a mysql:// URL means MySQL, whose TLS guard reads
    # performance_schema, which MariaDB leaves off.
    url = server.url().replace("mysql://", "mariadb://", 1)
    environ = {"DATABASE_URL": url, **tls_variables(server, tls)}
    pooled = {"databases": {"default": {"pool": True}}}
    # An empty folder (no dbconfig.json) and the environment passed in: only these count.
    with tempfile.TemporaryDirectory() as empty:
        rendered = build_databases(empty, environ=environ)["default"]
        ours_pooled = build_databases(empty, environ=environ, overrides=pooled)["default"] if pool else {}
    django_s: dict[str, Any] = {**rendered, "ENGINE": engine}
    variants = [
        Variant(
            "Django defaults (CONN_MAX_AGE=0)",
            django_s | {"CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False},
        ),
        Variant(PERSISTENT_VARIANT, django_s | {"CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": False}),
        Variant(
            "persistent, Django's health checks",
            django_s | {"CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True},
        ),
    ]
    if pool:
        options = {**django_s["OPTIONS"], "pool": True}
        for label, checks in ((POOL_VARIANT, False), (POOL_CHECKS_VARIANT, True)):
            settings = {"CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": checks, "OPTIONS": options}
            variants.append(Variant(label, django_s | settings))
    variants.append(Variant(DEFAULT_VARIANT, dict(rendered)))
    if pool:
        variants.append(Variant(OUR_POOL_VARIANT, dict(ours_pooled)))
    return variants


def configure_django(variants: dict[str, Variant]) -> None:
    """Every variant becomes an alias of its own; `default` stays unused."""
    import django
    from django.conf import settings

    databases: dict[str, Any] = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    databases |= {alias: variant.settings for alias, variant in variants.items()}
    settings.configure(DATABASES=databases, USE_TZ=True)
    django.setup()


class Bench:
    """The variants' Django connections, each shown to Django only during its own slices."""

    def __init__(self, aliases: list[str]) -> None:
        from django.db import connections

        self.connections = connections
        self.wrappers: dict[str, Any] = {}
        for alias in aliases:
            self.wrappers[alias] = connections[alias]
            with self.visible(alias):
                for _ in range(WARMUP_CYCLES):
                    self.cycle(alias)

    @contextlib.contextmanager
    def visible(self, alias: str) -> Any:
        self.connections[alias] = self.wrappers[alias]
        try:
            yield
        finally:
            del self.connections[alias]

    def cycle(self, alias: str) -> None:
        """One request: the signals Django's handlers send, around one query."""
        from django.core.signals import request_finished, request_started

        request_started.send(sender=None)
        try:
            with self.wrappers[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        finally:
            request_finished.send(sender=None)

    def slice(self, alias: str) -> tuple[int, float, float]:
        """Run cycles for one slice; return how many, how long they took, and the CPU time
        this thread spent on them (the process's own work: what load on the machine adds
        to the elapsed time, waiting for a core, it does not add here)."""
        count = 0
        with self.visible(alias):
            cpu = time.thread_time()
            start = time.perf_counter()
            deadline = start + SLICE_SECONDS
            while True:
                self.cycle(alias)
                count += 1
                now = time.perf_counter()
                if now >= deadline:
                    return count, now - start, time.thread_time() - cpu

    def close(self) -> None:
        for wrapper in self.wrappers.values():
            wrapper.close()
            if hasattr(wrapper, "close_pool"):
                wrapper.close_pool()


def measure(aliases: list[str], *, rounds: int, seconds: float) -> tuple[Results, Results]:
    """Requests/s of each alias in each round, the aliases taking turns slice by slice;
    and the CPU microseconds this process spent per request, by round."""
    bench = Bench(aliases)
    rates: Results = {alias: [] for alias in aliases}
    cpu_us: Results = {alias: [] for alias in aliases}
    try:
        for index in range(rounds):
            counts = dict.fromkeys(aliases, 0)
            spent = dict.fromkeys(aliases, 0.0)
            cpu = dict.fromkeys(aliases, 0.0)
            # Each alias gets the same time: the next slice goes to the one that had least.
            while min(spent.values()) < seconds / len(aliases):
                alias = min(aliases, key=spent.__getitem__)
                count, elapsed, used = bench.slice(alias)
                counts[alias] += count
                spent[alias] += elapsed
                cpu[alias] += used
            for alias in aliases:
                rates[alias].append(counts[alias] / spent[alias])
                cpu_us[alias].append(cpu[alias] / counts[alias] * 1e6)
            print(f"  round {index + 1}/{rounds} done", file=sys.stderr)
    finally:
        bench.close()
    return rates, cpu_us


def table(title: str, variants: dict[str, Variant], results: Results, cpu_us: Results) -> str:
    """One server's variants: median requests/s, ratio to the fastest, CPU per request, and the target."""
    medians = {alias: statistics.median(values) for alias, values in results.items()}
    fastest = max(medians.values())
    width = max(len(variant.label) for variant in variants.values())
    lines = [
        title,
        f"  {'configuration':<{width}}  {'requests/s':>10}  {'vs fastest':>10}  {'CPU µs/request':>14}",
    ]
    for alias, median in medians.items():
        label = variants[alias].label
        cpu = statistics.median(cpu_us[alias])
        lines.append(f"  {label:<{width}}  {median:>10,.0f}  {median / fastest:>9.2f}x  {cpu:>14.1f}")
    by_label = {variant.label: alias for alias, variant in variants.items()}

    def paired(ours: str, baseline: str) -> float:
        pairs = zip(results[by_label[ours]], results[by_label[baseline]], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def cpu_added(ours: str, baseline: str) -> float:
        pairs = zip(cpu_us[by_label[ours]], cpu_us[by_label[baseline]], strict=True)
        return statistics.median(a - b for a, b in pairs)

    ratio = paired(DEFAULT_VARIANT, PERSISTENT_VARIANT)
    verdict = "meets" if ratio >= TARGET else "MISSES"
    lines.append(
        f"  {DEFAULT_VARIANT} vs {PERSISTENT_VARIANT}, median of per-round ratios: "
        f"{ratio:.2f}x ({verdict} the {TARGET:.2f}x target); CPU per request "
        f"{cpu_added(DEFAULT_VARIANT, PERSISTENT_VARIANT):+.1f} µs"
    )
    if OUR_POOL_VARIANT in by_label:
        lines.append(
            f"  {OUR_POOL_VARIANT} (health checks on) vs {POOL_VARIANT}, median of per-round ratios: "
            f"{paired(OUR_POOL_VARIANT, POOL_VARIANT):.2f}x (CPU per request "
            f"{cpu_added(OUR_POOL_VARIANT, POOL_VARIANT):+.1f} µs); "
            f"vs {POOL_CHECKS_VARIANT}: {paired(OUR_POOL_VARIANT, POOL_CHECKS_VARIANT):.2f}x"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- through PgBouncer

PGBOUNCER_DIRECT = "direct, persistent (conn_max_age 60)"
PGBOUNCER_POOLED = "PgBouncer transaction mode, persistent"


def pgbouncer_variants(stack: contextlib.ExitStack) -> tuple[str, dict[str, Variant]]:
    """build_databases() aliases straight to a PostgreSQL and through a PgBouncer in front of it."""
    from django_dbconfig import build_databases
    from tests.pgbouncer import PgBouncer, pgbouncer_version
    from tests.servers import PostgresServer

    print("starting a throwaway PostgreSQL and PgBouncer (transaction mode)...", file=sys.stderr)
    server = stack.enter_context(PostgresServer())
    bouncer = PgBouncer(server, pool_mode="transaction")
    stack.callback(bouncer.cleanup)
    bouncer.start()
    keys = {
        "backend": "postgresql",
        "name": server.dbname,
        "user": server.user,
        "password": server.password,
        "sslmode": "disable",
        "statement_timeout": "30s",
    }
    direct = {**keys, "host": server.host, "port": server.port}
    pooled = {**keys, "host": bouncer.host, "port": bouncer.port, "pooler": "transaction"}
    databases = {
        "pgbouncer_0": {**direct, "conn_max_age": 60},
        "pgbouncer_1": {**pooled, "conn_max_age": 60},
        "pgbouncer_2": {**direct, "conn_max_age": 0},
        "pgbouncer_3": {**pooled, "conn_max_age": 0},
    }
    labels = [
        PGBOUNCER_DIRECT,
        PGBOUNCER_POOLED,
        "direct, new connection per request",
        "PgBouncer, new connection per request",
    ]
    with tempfile.TemporaryDirectory() as empty:
        rendered = build_databases(empty, environ={}, overrides={"databases": databases})
    # The role's defaults that the transaction pooler needs, as dbcheck --apply-settings writes them.
    server.psql(f"ALTER ROLE {server.user} IN DATABASE {server.dbname} SET statement_timeout = '30s'")
    title = (
        f"PostgreSQL direct and through PgBouncer {pgbouncer_version()} (transaction mode), "
        "one SELECT 1 per request"
    )
    return title, {
        alias: Variant(label, rendered[alias]) for alias, label in zip(databases, labels, strict=True)
    }


def pgbouncer_table(title: str, variants: dict[str, Variant], results: Results) -> str:
    medians = {alias: statistics.median(values) for alias, values in results.items()}
    width = max(len(variant.label) for variant in variants.values())
    by_label = {variant.label: alias for alias, variant in variants.items()}
    direct = medians[by_label[PGBOUNCER_DIRECT]]
    lines = [title, f"  {'configuration':<{width}}  {'requests/s':>10}  {'vs direct':>10}"]
    for alias, median in medians.items():
        lines.append(f"  {variants[alias].label:<{width}}  {median:>10,.0f}  {median / direct:>9.2f}x")
    paired = statistics.median(
        a / b
        for a, b in zip(results[by_label[PGBOUNCER_POOLED]], results[by_label[PGBOUNCER_DIRECT]], strict=True)
    )
    lines.append(f"  {PGBOUNCER_POOLED} vs {PGBOUNCER_DIRECT}, median of per-round ratios: {paired:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds (medians are taken)")
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="length of one round, shared by the variants"
    )
    parser.add_argument(
        "--only", choices=("postgresql", "mariadb", "pgbouncer"), help="one server (or PgBouncer) only"
    )
    parser.add_argument(
        "--transport",
        choices=("tcp", "tls"),
        help="only plain TCP, or only verified TLS (default: both, one table each)",
    )
    args = parser.parse_args(argv)

    from tests.servers import MariaDBServer, PostgresServer

    # name: (display, server class, Django's engine, whether Django pools it)
    kinds = {
        "postgresql": ("PostgreSQL", PostgresServer, "django.db.backends.postgresql", True),
        "mariadb": ("MariaDB", MariaDBServer, "django.db.backends.mysql", False),
    }
    chosen = {name: kind for name, kind in kinds.items() if args.only in (None, name)}
    transports = [t for t in ("tcp", "tls") if args.transport in (None, t)]
    with contextlib.ExitStack() as stack:
        # group name: (title, its variants by alias)
        groups: dict[str, tuple[str, dict[str, Variant]]] = {}
        for name, (display, factory, engine, pool) in chosen.items():
            print(f"starting a throwaway {display} server (TLS available)...", file=sys.stderr)
            server = stack.enter_context(factory(tls=True))
            for transport in transports:
                listed = variants_for(server, engine, pool=pool, tls=transport == "tls")
                how = "verified TLS (verify-full)" if transport == "tls" else "TCP without TLS"
                title = (
                    f"{display} over {how}, password authentication, one SELECT 1 per request; "
                    f"median of {args.rounds} rounds"
                )
                group = f"{name}_{transport}"
                groups[group] = (title, {f"{group}_{i}": variant for i, variant in enumerate(listed)})
        if args.only in (None, "pgbouncer"):
            groups["pgbouncer"] = pgbouncer_variants(stack)
        configure_django({alias: v for _, group in groups.values() for alias, v in group.items()})
        reports = []
        for name, (title, variants) in groups.items():
            print(f"measuring: {title}...", file=sys.stderr)
            results, cpu_us = measure(list(variants), rounds=args.rounds, seconds=args.seconds)
            if name == "pgbouncer":
                reports.append(pgbouncer_table(title, variants, results))
                continue
            reports.append(table(title, variants, results, cpu_us))
    print("\n\n".join(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
