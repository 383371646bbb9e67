"""build_databases() with every layer present, beside dj_database_url.parse() of the same URLs.

Run: .venv/bin/python benchmarks/build.py
Prints medians over several rounds, measured side by side (interleaved) in one run,
and the import time of django_dbconfig in a fresh interpreter.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 15
CALLS = 200
URLS = {
    "default": "postgresql://app:pw@db.internal:5432/app?sslmode=verify-full",
    "analytics": "postgresql://reporter:pw@warehouse.internal:5432/analytics?sslmode=require",
    "replica": "postgresql://app:pw@replica.internal:5432/app?sslmode=verify-full",
}


def make_project(root: Path) -> dict[str, str]:
    """Three aliases; every layer sets something. Returns the environment."""
    (root / ".secrets").mkdir()
    (root / "dbconfig.json").write_text(
        json.dumps(
            {
                "defaults": {"conn_max_age": 60, "statement_timeout": "30s"},
                "databases": {
                    "default": {"url": URLS["default"], "search_path": ["app", "public"]},
                    "analytics": {"url": URLS["analytics"], "read_only": True},
                    "replica": {"url": URLS["replica"], "replica_of": "default"},
                },
                "routes": {"reports": "analytics"},
                "environments": {"production": {"defaults": {"lock_timeout": "5s"}}},
            }
        )
    )
    (root / ".secrets" / "dbconfig.json").write_text(json.dumps({"databases.default.password": "secret"}))
    return {"DBCONFIG_ENV": "production", "DBCONFIG_ANALYTICS_APPLICATION_NAME": "reports"}


def per_call_us(func: object, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        func()  # type: ignore[operator]
    return (time.perf_counter() - start) / calls * 1e6


def import_ms() -> float:
    code = "import time; t = time.perf_counter(); import django_dbconfig; print((time.perf_counter()-t)*1e3)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(7)
    ]
    return statistics.median(runs)


def import_with_django_ms() -> float:
    code = (
        "import django.conf, django.core.exceptions, time; t = time.perf_counter(); import django_dbconfig; "
        "print((time.perf_counter() - t) * 1000)"
    )
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(7)
    ]
    return statistics.median(runs)


def main() -> None:
    import dj_database_url

    from django_dbconfig import build_databases

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        environ = make_project(root)
        build = lambda: build_databases(root, environ=environ, overrides={"databases.default.host": "db2"})  # noqa: E731
        parse = lambda: [dj_database_url.parse(url, conn_max_age=60) for url in URLS.values()]  # noqa: E731
        assert set(build()) == {"default", "analytics", "replica"}
        ours, theirs = [], []
        for _ in range(ROUNDS):  # interleaved, so both see the same machine noise
            ours.append(per_call_us(build, CALLS))
            theirs.append(per_call_us(parse, CALLS))
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"build_databases(), 3 aliases, all 6 layers   median {ours_median:8.1f} us/call")
    print(f"dj_database_url.parse() x 3 URLs             median {theirs_median:8.1f} us/call")
    print(f"ratio build_databases / parse x 3            {ours_median / theirs_median:8.1f}x")
    print(f"import django_dbconfig (fresh interpreter)   median {import_ms():8.1f} ms")
    print(f"  after Django (as in settings.py)            median {import_with_django_ms():8.1f} ms")


if __name__ == "__main__":
    main()
