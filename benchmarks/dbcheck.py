"""How long dbcheck takes: three healthy aliases against one, and a hung alias.

Run: .venv/bin/python benchmarks/dbcheck.py [--runs N]

Starts a throwaway PostgreSQL with TLS (tests/servers.py); every alias connects to
it with sslmode=verify-full and a SCRAM password, so each probe does a real TLS
handshake and authentication. Prints the median wall time of `dbcheck` over one
alias and over three, their ratio (1.0 = fully concurrent, 3.0 = one after the
other), and the time to report an alias whose server accepts TCP and never
answers, with a 2 s connect timeout, next to a healthy alias.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import django
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from django_dbconfig import build_databases
from tests.servers import HungServer, PostgresServer, make_ca


class DelayProxy:
    """A TCP proxy that holds every server reply for `delay` seconds: a network's round trip."""

    def __init__(self, port: int, delay: float) -> None:
        self.upstream, self.delay = port, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.delay), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if delay:
                    time.sleep(delay)
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


class DefaultOnly:
    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == "default"


def run_dbcheck(databases: dict[str, Any]) -> tuple[float, int]:
    """Wall time of one dbcheck run over `databases`, and its exit status."""
    connections.__dict__["settings"] = connections.configure_settings(databases)
    start = time.perf_counter()
    status = 0
    try:
        call_command("dbcheck", stdout=io.StringIO(), no_color=True)
    except CommandError as exc:
        status = exc.returncode
    return time.perf_counter() - start, status


def main() -> None:
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django_dbconfig"], DATABASES={}, USE_TZ=True
    )
    django.setup()
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    settings.DATABASE_ROUTERS = [f"{__name__}.DefaultOnly"]
    ca = make_ca()
    server = PostgresServer(tls=True, tls_material=ca).__enter__()
    base = Path(tempfile.mkdtemp(prefix="dbcheck-bench-"))
    try:

        def alias(port: int) -> dict[str, Any]:
            return {
                "backend": "postgresql",
                "host": server.host,
                "port": port,
                "name": server.dbname,
                "user": server.user,
                "password": server.password,
                "sslmode": "verify-full",
                "sslrootcert": str(ca.ca_path),
                "statement_timeout": "30s",
                "connect_timeout": "2s",
            }

        def build(names: list[str], port: int) -> dict[str, Any]:
            return build_databases(base, environ={}, overrides={"databases": {n: alias(port) for n in names}})

        proxy = DelayProxy(server.port, 0.010)
        for label, port in (("loopback", server.port), ("+10 ms per server reply", proxy.port)):
            one, three = build(["default"], port), build(["default", "b", "c"], port)
            assert run_dbcheck(three)[1] == 0, "the healthy aliases must pass"  # also warms up
            times_one, times_three = [], []
            for _ in range(runs):
                times_one.append(run_dbcheck(one)[0])
                times_three.append(run_dbcheck(three)[0])
            m1, m3 = statistics.median(times_one), statistics.median(times_three)
            print(f"[{label}] dbcheck, 1 alias:   median {m1 * 1000:7.1f} ms over {runs} runs")
            print(f"[{label}] dbcheck, 3 aliases: median {m3 * 1000:7.1f} ms over {runs} runs")
            print(f"[{label}] ratio 3 / 1:        {m3 / m1:.2f}  (1.0 = concurrent, 3.0 = sequential)")
        proxy.close()

        hung_times = []
        with HungServer() as hung:
            for _ in range(3):
                databases = build(["default"], server.port)
                databases["hung"] = {**databases["default"], "HOST": hung.host, "PORT": hung.port}
                databases["hung"]["OPTIONS"] = {**databases["hung"]["OPTIONS"], "connect_timeout": 2}
                elapsed, status = run_dbcheck(databases)
                assert status == 1, "the hung alias must fail"
                hung_times.append(elapsed)
        print(
            f"hung alias (connect_timeout 2 s) + healthy alias: median "
            f"{statistics.median(hung_times):.2f} s over {len(hung_times)} runs"
        )
    finally:
        server.cleanup()
        ca.cleanup()


if __name__ == "__main__":
    main()
