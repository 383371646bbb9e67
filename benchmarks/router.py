"""Cost of one db_for_read call: this router (with replicas), a bare router, django-multidb-router.

The lag-aware variant has a max_replica_lag on both replicas: their lag is measured in
background threads (SQLite here, so always within the limit) and the request path only
reads the picker those threads maintain.

Run from the repository root:  python benchmarks/router.py [--number N] [--repeat R]

Each router is timed twice: calling its db_for_read directly, and through Django's
own `ConnectionRouter` (what `Model.objects.all()` pays). Figures are the median,
over the repeats, of nanoseconds per call. Needs `pip install django-multidb-router`
for the third router (it is skipped, with a note, when missing).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def setup_django() -> None:
    import django
    from django.conf import settings

    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    settings.configure(
        SECRET_KEY="benchmark-only",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "tests.apps.shop",
            "tests.apps.reports",
        ],
        DATABASES={
            "default": sqlite,
            "replica1": {**sqlite, "TEST": {"MIRROR": "default"}},
            "replica2": {**sqlite, "TEST": {"MIRROR": "default"}},
            "analytics": sqlite,
        },
        DBCONFIG_ROUTES={"reports": "analytics"},
        REPLICA_DATABASES=["replica1", "replica2"],  # django-multidb-router's setting
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


class BareRouter:
    """The cheapest possible router: no opinion on anything."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=9, help="repeats (the median is shown)")
    args = parser.parse_args()
    setup_django()

    from django.db.utils import ConnectionRouter

    from django_dbconfig.routers import DatabaseRouter, pin_to_primary, reset_pins
    from tests.apps.shop.models import Order

    lag_aware = DatabaseRouter(max_replica_lag={"replica1": 5.0, "replica2": 5.0})
    routers: dict[str, Any] = {
        "bare (returns None)": BareRouter(),
        "django-dbconfig DatabaseRouter": DatabaseRouter(),
        "django-dbconfig, lag-aware (max_replica_lag)": lag_aware,
    }
    try:
        import multidb
    except ImportError:
        print("django-multidb-router is not installed: pip install django-multidb-router\n")
    else:
        routers["django-multidb-router PinningReplicaRouter"] = multidb.PinningReplicaRouter()

    ours = routers["django-dbconfig DatabaseRouter"]
    assert ours.db_for_read(Order) in ("replica1", "replica2"), "replicas are not configured"
    deadline = time.monotonic() + 10
    while {(lag_aware.db_for_read(Order), reset_pins())[0] for _ in range(4)} != {"replica1", "replica2"}:
        assert time.monotonic() < deadline, "the lag monitor never measured the replicas"
        time.sleep(0.05)
    n, r = args.number, args.repeat
    print(f"Python {sys.version.split()[0]}; {n} calls x {r} repeats; median ns per call\n")
    print(f"{'router':<46}{'direct':>10}{'ratio':>8}{'via Django':>12}{'ratio':>8}")
    cases: dict[str, tuple[Any, bool]] = {name: (router, False) for name, router in routers.items()}
    cases["django-dbconfig, inside pin_to_primary()"] = (ours, True)
    timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    # Interleave the routers within each repeat: a busy machine then slows all of them alike.
    for _ in range(r):
        for name, (router, pinned) in cases.items():
            method = router.db_for_read
            routed = ConnectionRouter([router]).db_for_read
            with pin_to_primary() if pinned else contextlib.nullcontext():
                timings[name][0].append(timeit.timeit(lambda: method(Order), number=n))  # noqa: B023
                timings[name][1].append(timeit.timeit(lambda: routed(Order), number=n))  # noqa: B023
    results = {
        name: (statistics.median(direct) / n * 1e9, statistics.median(via) / n * 1e9)
        for name, (direct, via) in timings.items()
    }
    bare_direct, bare_django = results["bare (returns None)"]
    for name, (direct, via) in results.items():
        print(f"{name:<46}{direct:>10.1f}{direct / bare_direct:>7.2f}x{via:>12.1f}{via / bare_django:>7.2f}x")
    lag_aware.stop_measuring()


if __name__ == "__main__":
    main()
