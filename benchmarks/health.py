"""The health endpoint per request: probed every time (cache off) beside cached, interleaved.

Run: .venv/bin/python benchmarks/health.py [--part speed|footprint|all]
(speed needs the machine's PostgreSQL and MariaDB; footprint starts throwaway PostgreSQL servers)
Each round makes REQUESTS requests with the cache off, then as many with it on, through
Django's test client (WSGI, the whole view), for one alias on each server; the medians of
the rounds are printed. (Connections opened are counted in tests/test_health_endpoint.py.)

`--part footprint` registers 1, 200 and 1,000 aliases (conn_max_age 2 s) on a throwaway
PostgreSQL and prints, after one request that probes them all: its time, the process's
threads and the server's sessions, then the same 5 s later (past conn_max_age). Then,
with one alias on a server stopped with SIGSTOP (connect timeout 2 s, cache 0.5 s): the
time of the request that finds it hung, and of 8 concurrent requests after it (median,
max), each asking for that alias and `default`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("speed", "footprint", "all"), default="all")
    part = parser.parse_args().part
    if part == "all":
        # Django is configured once per process: each part in its own.
        for one in ("speed", "footprint"):
            subprocess.run([sys.executable, __file__, "--part", one], check=True)
    elif part == "speed":
        speed()
    else:
        footprint()


def speed() -> None:
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


def footprint() -> None:
    import json
    import os
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tests.servers import PostgresServer

    root = Path(tempfile.mkdtemp())
    settings.configure(
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["django_dbconfig"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(root / "d.sqlite3")}},
        ROOT_URLCONF="tests.health_urls",
        MIDDLEWARE=[],
        DBCONFIG_HEALTH_CACHE_SECONDS=0,
    )
    django.setup()
    from django.db import connections
    from django.test import Client

    from django_dbconfig import build_databases
    from django_dbconfig.health import status

    def entry(url: str, **environ: str) -> dict[str, object]:
        built = build_databases(root, environ={"DATABASE_URL": url, **environ})["default"]
        return dict(connections.configure_settings({"default": built})["default"])

    def request(query: str = "") -> float:
        start = time.perf_counter()
        Client().get("/health/databases/" + query)
        return time.perf_counter() - start

    print("aliases  first request  threads  sessions  | 5 s later: threads  sessions")
    for count in (1, 200, 1_000):
        with PostgresServer(settings={"max_connections": str(count + 50)}) as server:
            alias = entry(server.url(), DBCONFIG_DEFAULT_CONN_MAX_AGE="2")
            names = [f"bench_{count}_{n}" for n in range(count)]
            for name in names:
                connections.settings[name] = dict(alias)

            def sessions(server: PostgresServer = server) -> int:
                rows = server.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")
                return int(rows[0][0])

            took = request()
            threads, open_sessions = threading.active_count(), sessions()
            time.sleep(5)
            print(
                f"{count:>7}  {took:>11.2f} s  {threads:>7}  {open_sessions:>8}  |  "
                f"{threading.active_count():>17}  {sessions():>8}"
            )
            status.forget()
            for name in names:
                del connections.settings[name]

    settings.DBCONFIG_HEALTH_CACHE_SECONDS = 0.5
    with PostgresServer() as server:
        connections.settings["frozen"] = entry(server.url(), DBCONFIG_DEFAULT_CONNECT_TIMEOUT="2s")
        query = "?database=frozen&database=default"
        request(query)
        postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], check=False, capture_output=True, text=True
        )
        processes = [postmaster, *(int(pid) for pid in children.stdout.split())]
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(0.6)
            first = request(query)
            time.sleep(0.6)
            with ThreadPoolExecutor(8) as pool:
                times = list(pool.map(lambda _: request(query), range(8)))
            body = json.loads(Client().get("/health/databases/" + query).content)
        finally:
            for pid in processes:
                os.kill(pid, signal.SIGCONT)
        status.forget()
    frozen = next(row for row in body["databases"] if row["alias"] == "frozen")
    print(
        f"one alias hung (SIGSTOP, connect timeout 2 s): the request finding it {first:.2f} s; "
        f"8 concurrent requests after it: median {statistics.median(times):.3f} s, max {max(times):.3f} s; "
        f"its row then: stale={frozen.get('stale')}, age_s={frozen.get('age_s')}"
    )


if __name__ == "__main__":
    main()
