"""A stream of request cycles through a server restart (fast shutdown, start on the same port).

Each configuration has two connections, as two workers of one application would: a busy
one that keeps serving requests while the server is down, and an idle one that serves
nothing until the server is back. Requests while the server is down may fail. After it
is back no request may fail on a stale connection, except with neither our check nor
Django's: then the idle worker's first request fails, which shows the test can fail.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, connections

from django_dbconfig import build_databases
from django_dbconfig.backends.base.health import Verdict
from tests.servers import MariaDBServer, PostgresServer, serving
from tests.test_health import Spy

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.slow

BEFORE, DOWN, AFTER = 10, 3, 10
CONFIGURATIONS = ("dbconfig default", "Django's health checks", "neither")
WORKERS = ("busy", "idle")


def configurations(tmp_path: Path, server: Any, django_engine: str) -> dict[str, dict[str, Any]]:
    """The DATABASES entry of each configuration under test."""
    ours = dict(build_databases(tmp_path, environ={"DATABASE_URL": server.url()})["default"])
    django = ours | {"ENGINE": django_engine}
    return {
        "dbconfig default": ours,
        "Django's health checks": django | {"CONN_HEALTH_CHECKS": True},
        "neither": django | {"CONN_HEALTH_CHECKS": False},
    }


def alias(configuration: str, worker: str) -> str:
    return f"restart_{CONFIGURATIONS.index(configuration)}_{worker}"


@pytest.fixture
def registered() -> Iterator[Any]:
    """Add aliases to Django's connections for one test; close and remove them after."""
    added: list[str] = []

    def register(entries: dict[str, dict[str, Any]]) -> None:
        full = connections.configure_settings({"default": connections.settings["default"], **entries})
        for name in entries:
            connections.settings[name] = full[name]
            added.append(name)

    yield register
    for connection in connections.all(initialized_only=True):
        if connection.alias in added:
            connection.close()
            del connections[connection.alias]
    for name in added:
        del connections.settings[name]


def request_cycle(name: str) -> str | None:
    """One request with one query; the error's class and message if it failed."""
    request_started.send(sender=None)
    try:
        with connections[name].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    finally:
        request_finished.send(sender=None)
    return None


def stream(server: Any, entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str | None]]]:
    """Serve requests before, during and after a restart; the outcome of each, per alias and phase."""
    outcomes: dict[str, dict[str, list[str | None]]] = {
        name: {"before": [], "down": [], "after": []} for name in entries
    }
    for _ in range(BEFORE):
        for name in entries:
            outcomes[name]["before"].append(request_cycle(name))
    server.stop("fast")
    try:
        for _ in range(DOWN):
            for name in entries:
                if name.endswith("_busy"):
                    outcomes[name]["down"].append(request_cycle(name))
    finally:
        server.start()
    for _ in range(AFTER):
        for name in entries:
            outcomes[name]["after"].append(request_cycle(name))
    return outcomes


def failures(outcomes: dict[str, dict[str, list[str | None]]]) -> dict[str, dict[str, int]]:
    """Failed requests per configuration and phase, both workers together."""
    counts = {}
    for configuration in CONFIGURATIONS:
        counts[configuration] = {
            phase: sum(
                outcome is not None
                for worker in WORKERS
                for outcome in outcomes[alias(configuration, worker)][phase]
            )
            for phase in ("before", "down", "after")
        }
    return counts


def run_restart(tmp_path: Path, server: Any, django_engine: str, register: Any) -> Any:
    entries = {
        alias(configuration, worker): settings
        for configuration, settings in configurations(tmp_path, server, django_engine).items()
        for worker in WORKERS
    }
    register(entries)
    spy = Spy(connections[alias("dbconfig default", "idle")])
    outcomes = stream(server, entries)
    counts = failures(outcomes)
    stale = outcomes[alias("neither", "idle")]["after"][0]
    print(f"\n{server.kind} restart, failed requests: {counts}; stale connection error: {stale}")
    # Our idle worker found the closed connection at its first request after the restart from
    # the socket alone, and never needed Django's round trip. (A request on a new connection
    # needs no check: the first of each run of HEALTHY verdicts is the second request.)
    expected = [Verdict.HEALTHY] * (BEFORE - 1) + [Verdict.DEAD] + [Verdict.HEALTHY] * (AFTER - 1)
    assert (spy.verdicts, spy.calls) == (expected, 0)
    return outcomes, counts


def assert_only_the_unchecked_idle_worker_fails_after_restart(outcomes: Any, counts: Any) -> None:
    assert [counts[c]["before"] for c in CONFIGURATIONS] == [0, 0, 0]
    after = {name: [outcome is not None for outcome in phases["after"]] for name, phases in outcomes.items()}
    # With neither check, the idle worker's first request after the restart meets the stale
    # connection; the failure closes it, and the next request reconnects.
    expected = {name: [False] * AFTER for name in outcomes}
    expected[alias("neither", "idle")] = [True] + [False] * (AFTER - 1)
    assert after == expected, outcomes


@pytest.mark.postgresql
def test_postgresql_restart_leaves_no_stale_connection(tmp_path: Path, registered: Any) -> None:
    with serving("throwaway PostgreSQL", lambda: PostgresServer().__enter__()) as server:
        outcomes, counts = run_restart(tmp_path, server, "django.db.backends.postgresql", registered)
    assert_only_the_unchecked_idle_worker_fails_after_restart(outcomes, counts)


@pytest.mark.mariadb
def test_mariadb_restart_leaves_no_stale_connection(tmp_path: Path, registered: Any) -> None:
    with serving("throwaway MariaDB", lambda: MariaDBServer().__enter__()) as server:
        outcomes, counts = run_restart(tmp_path, server, "django.db.backends.mysql", registered)
    assert_only_the_unchecked_idle_worker_fails_after_restart(outcomes, counts)
