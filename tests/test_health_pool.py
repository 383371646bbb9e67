"""`pool: true` with health checks: each checkout is checked on the socket, not with a query.

Server-side evidence: pg_stat_activity's `query_start` of the pooled session moves
with every statement it receives, psycopg_pool's empty-query check included.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from django_dbconfig import build_databases
from django_dbconfig.backends.base.health import socket_readable
from tests.conftest import query_one
from tests.helpers import needs_django_pool
from tests.test_health import DJANGO, pg_gone, tls_environ, wait_for

pytestmark = [pytest.mark.postgresql, needs_django_pool]

# One pooled session, so the connection checked out is always the one under test.
ONE_SESSION = {"min_size": 1, "max_size": 1, "timeout": 20}


@contextlib.contextmanager
def pooled_connection(settings: dict[str, Any]) -> Iterator[Any]:
    """A Django connection to `settings` through its pool; the pool closed afterwards.

    Django keeps pools per alias name in a class attribute: the alias is a name of our own.
    """
    from django.db.utils import ConnectionHandler

    alias = f"pool_{uuid.uuid4().hex[:8]}"
    connection = ConnectionHandler({"default": {"ENGINE": "django.db.backends.dummy"}, alias: settings})[
        alias
    ]
    try:
        connection.ensure_connection()
        yield connection
    finally:
        connection.close()
        connection.close_pool()


@contextlib.contextmanager
def pooled(tmp_path: Path, server: Any, *, engine: str | None = None, tls: bool = False) -> Iterator[Any]:
    """A Django connection with `pool` and health checks on, its pool closed afterwards."""
    environ = {"DATABASE_URL": server.url(), **tls_environ(server, tls)}
    if engine:
        environ["DBCONFIG_DEFAULT_ENGINE"] = engine
    overrides = {"databases": {"default": {"pool": ONE_SESSION}}}
    settings = dict(build_databases(tmp_path, environ=environ, overrides=overrides)["default"])
    assert (settings["CONN_HEALTH_CHECKS"], settings["CONN_MAX_AGE"]) == (True, 0)
    with pooled_connection(settings) as connection:
        yield connection


def query_start(server: Any, pid: int) -> Any:
    rows = server.psql("SELECT query_start FROM pg_stat_activity WHERE pid = %s", [pid])
    return rows[0][0]


def count_fallbacks() -> Any:
    """Counts psycopg_pool's own (round-trip) check, still running it."""
    from psycopg_pool import ConnectionPool

    return mock.patch.object(ConnectionPool, "check_connection", wraps=ConnectionPool.check_connection)


@pytest.mark.parametrize(
    ("engine", "round_trip"),
    [(None, False), (DJANGO["postgresql"], True)],
    ids=["our engine", "django engine (control)"],
)
def test_pool_checkout_of_a_healthy_connection_sends_nothing_with_our_engine(
    tmp_path: Path, pg_plain_server: Any, engine: str | None, round_trip: bool
) -> None:
    with pooled(tmp_path, pg_plain_server, engine=engine) as connection:
        pid = query_one(connection, "SELECT pg_backend_pid()")
        starts = []
        for _ in range(3):
            connection.close()  # back to the pool
            starts.append(query_start(pg_plain_server, pid))
            connection.ensure_connection()  # checked out, and checked
            assert connection.connection.info.backend_pid == pid
        starts.append(query_start(pg_plain_server, pid))
    moved = [after != before for before, after in itertools.pairwise(starts)]
    assert moved == [round_trip] * 3


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_pool_checkout_finds_a_terminated_backend_without_a_round_trip(
    tmp_path: Path, request: pytest.FixtureRequest, tls: bool
) -> None:
    server = request.getfixturevalue("pg_tls_server" if tls else "pg_plain_server")
    with pooled(tmp_path, server, tls=tls) as connection:
        pid = query_one(connection, "SELECT pg_backend_pid()")
        assert connection.connection.pgconn.ssl_in_use is tls
        pooled_session = connection.connection
        connection.close()
        server.psql("SELECT pg_terminate_backend(%s)", [pid])
        wait_for(lambda: pg_gone(server, pid), "the backend to exit")
        wait_for(lambda: socket_readable(pooled_session.fileno()), "the close")
        with count_fallbacks() as fallback:
            new_pid = query_one(connection, "SELECT pg_backend_pid()")
    assert (new_pid != pid, fallback.call_count) == (True, 0)


def test_pool_without_health_checks_gets_no_check(tmp_path: Path, pg_plain_server: Any) -> None:
    environ = {"DATABASE_URL": pg_plain_server.url(), "DBCONFIG_DEFAULT_CONN_HEALTH_CHECKS": "false"}
    overrides = {"databases": {"default": {"pool": ONE_SESSION}}}
    settings = dict(build_databases(tmp_path, environ=environ, overrides=overrides)["default"])
    with pooled_connection(settings) as connection:
        pid = query_one(connection, "SELECT pg_backend_pid()")
        connection.close()
        before = query_start(pg_plain_server, pid)
        connection.ensure_connection()
        after = query_start(pg_plain_server, pid)
    assert before == after
