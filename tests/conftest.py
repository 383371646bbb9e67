"""Shared fixtures: the machine's PostgreSQL and MariaDB, and Django connections to them.

Throwaway servers (TLS, replicas, hung sockets, restarts) live in tests/servers.py.
In CI (CI=true) a test whose server is missing fails; elsewhere it skips and says
what to start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = [
    "tests.servers",
    "tests.pgbouncer",
    "tests.runtime_helpers",
    "tests.replication_servers",
    "tests.netns",
    "tests.patroni_cluster",
]

IN_CI = os.environ.get("CI", "").lower() == "true"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "database": "test"}
START_PG = "pg_ctlcluster --skip-systemctl-redirect 15 main start"
START_MARIADB = 'start-stop-daemon --start --oknodo --background --exec "$(command -v mariadbd)"'


def server_missing(what: str, how: str, error: object) -> None:
    """Fail in CI, skip elsewhere, saying what to start."""
    message = f"{what} is not reachable ({type(error).__name__}). Start it with: {how}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_postgres() -> dict[str, Any]:
    """Connection parameters of the machine's PostgreSQL (trust auth, database `test`)."""
    import psycopg

    try:
        psycopg.connect(**PG, connect_timeout=3).close()
    except psycopg.Error as exc:
        server_missing("PostgreSQL on 127.0.0.1:5432", START_PG, exc)
    return dict(PG)


@pytest.fixture(scope="session")
def shared_mariadb() -> dict[str, Any]:
    """Connection parameters of the machine's MariaDB (root, empty password, database `test`)."""
    import MySQLdb

    try:
        MySQLdb.connect(**MARIADB, connect_timeout=3).close()
    except MySQLdb.Error as exc:
        server_missing("MariaDB on 127.0.0.1:3306", START_MARIADB, exc)
    return dict(MARIADB)


@contextlib.contextmanager
def django_connection(settings: dict[str, Any], alias: str = "default") -> Iterator[Any]:
    """A Django connection built from one DATABASES entry, closed afterwards."""
    from django.db.utils import ConnectionHandler

    handler = ConnectionHandler({alias: settings})
    connection = handler[alias]
    try:
        connection.ensure_connection()
        yield connection
    finally:
        connection.close()
        # A pool the test made (pool true, or the ASGI pool of a request) goes with it:
        # pools are kept by alias, and the next test's alias of that name is another.
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


def query_one(connection: Any, sql: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


@pytest.fixture
def project(tmp_path: Any) -> Any:
    """An empty project folder; see tests/helpers.py."""
    from tests.helpers import Project

    return Project(tmp_path)


@pytest.fixture(autouse=True)
def _live_servers_unblocked(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[None]:
    """Tests marked postgresql or mariadb talk to real servers directly, outside pytest-django's test databases."""
    if request.node.get_closest_marker("postgresql") or request.node.get_closest_marker("mariadb"):
        with django_db_blocker.unblock():
            yield
    else:
        yield


@pytest.fixture
def register() -> Iterator[Any]:
    """Add aliases to Django's connections for one test; close them (and their pools) after."""
    added: list[str] = []

    from django.db import connections  # after pytest-django has set Django up

    def add(name: str, entry: dict[str, Any]) -> Any:
        full = connections.configure_settings({"default": connections.settings["default"], name: entry})
        connections.settings[name] = full[name]
        added.append(name)
        return connections[name]

    yield add
    for name in added:
        connection = connections[name]
        connection.close()
        if hasattr(connection, "close_pool"):
            connection.close_pool()
        del connections[name]
        del connections.settings[name]
