"""The health endpoint per request: probed every time (cache off) beside cached, interleaved.

Run: .venv/bin/python benchmarks/health.py   (needs the machine's PostgreSQL and MariaDB)
Each round makes REQUESTS requests with the cache off, then as many with it on, through
Django's test client (WSGI, the whole view), for one alias on each server; the medians of
the rounds are printed. (Connections opened are counted in tests/test_health_endpoint.py.)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.health_urls

ROUNDS = 9
REQUESTS = 50


def main() -> None:
    from django_dbconfig import build_databases

    root = Path(tempfile.mkdtemp())
    databases = build_databases(
        root,
        environ={
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test",
            "MARIADB_DATABASE_URL": "mysql://root@127.0.0.1:3306/test",
            "DBCONFIG_MARIADB_BACKEND": "mariadb",
        },
    )
    settings.configure(
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["django_dbconfig"],
        DATABASES=databases,
        ROOT_URLCONF="tests.health_urls",
        MIDDLEWARE=[],
    )
    django.setup()
    from django.test import Client

    from django_dbconfig.health import status

    client = Client()

    def per_request_ms(cache_seconds: float, query: str) -> float:
        settings.DBCONFIG_HEALTH_CACHE_SECONDS = cache_seconds
        start = time.perf_counter()
        for _ in range(REQUESTS):
            assert client.get("/health/databases/" + query).status_code == 200
        return (time.perf_counter() - start) / REQUESTS * 1000

    for alias in ("default", "mariadb"):
        query = f"?database={alias}"
        per_request_ms(0, query)  # open the connection the probes reuse
        off, on = [], []
        for _ in range(ROUNDS):
            off.append(per_request_ms(0, query))
            on.append(per_request_ms(60, query))
        status.forget()
        probed, cached = statistics.median(off), statistics.median(on)
        print(
            f"{alias:8} probed every request: {probed:6.2f} ms   cached: {cached:6.3f} ms   "
            f"ratio {probed / cached:5.1f}x"
        )


if __name__ == "__main__":
    main()
