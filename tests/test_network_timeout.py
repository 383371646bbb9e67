"""network_timeout: what it renders, how it is validated, and that it bounds a query to a vanished server.

The black-hole tests put a throwaway server in its own network namespace (tests/netns.py)
and drop its packets with iptables: no reset, no close, nothing, as when a host is lost
or a firewall forgets the connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError

from django_dbconfig import DbConfigError, load_config
from tests.conftest import query_one

NETWORK_TIMEOUT_S = 4
# The time to failure is network_timeout rounded to whole seconds of keepalive
# probes; the machine is shared and loaded, so the bound is generous.
MARGIN_S = 8


def render(project: Any, alias: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    project.write_config({"databases": {"default": alias}})
    return project.databases(environ)["default"]


# ------------------------------------------------------------------ rendering and validation


def test_postgresql_default_network_timeout_sets_keepalives_and_tcp_user_timeout(project: Any) -> None:
    options = render(project, {"backend": "postgresql", "name": "app"})["OPTIONS"]
    assert {k: v for k, v in options.items() if k.startswith(("keepalives", "tcp_"))} == {
        "keepalives": 1,
        "keepalives_idle": 15,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
    }


def test_mysql_network_timeout_goes_to_the_engine_in_seconds(project: Any) -> None:
    settings = render(project, {"backend": "mariadb", "name": "app", "network_timeout": "1min"})
    assert settings["ENGINE"] == "django_dbconfig.backends.mysql"
    assert settings["DBCONFIG"]["network_timeout"] == 60
    # Not an OPTIONS entry: those go to MySQLdb.connect(), which would refuse it.
    assert "network_timeout" not in settings["OPTIONS"]


def test_mysql_with_another_engine_gets_no_network_timeout(project: Any) -> None:
    settings = render(project, {"backend": "mysql", "name": "app", "engine": "django.db.backends.mysql"})
    assert "network_timeout" not in settings.get("DBCONFIG", {})


def test_null_network_timeout_turns_it_off(project: Any) -> None:
    pg = render(project, {"backend": "postgresql", "name": "app", "network_timeout": None})
    assert not [k for k in pg["OPTIONS"] if k.startswith(("keepalives", "tcp_"))]
    mysql = render(project, {"backend": "mysql", "name": "app"}, {"DBCONFIG_DEFAULT_NETWORK_TIMEOUT": "null"})
    assert "network_timeout" not in mysql.get("DBCONFIG", {})


def test_dbconfig_shows_network_timeout_and_its_source(project: Any) -> None:
    project.write_config({"databases": {"default": {"backend": "postgresql", "name": "app"}}})
    assert project.values()["network_timeout"] == "30s"
    assert project.sources()["network_timeout"] == "default"
    project.write_config(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "network_timeout": None}}}
    )
    assert project.values()["network_timeout"] == "null"
    assert project.sources()["network_timeout"] == "dbconfig.json: databases.default.network_timeout"


def test_network_timeout_under_a_second_is_an_error_naming_the_variable(project: Any) -> None:
    project.write_config({"databases": {"default": {"backend": "postgresql", "name": "app"}}})
    with pytest.raises(DbConfigError) as caught:
        project.load({"DBCONFIG_DEFAULT_NETWORK_TIMEOUT": "500ms"})
    assert str(caught.value) == (
        'DBCONFIG_DEFAULT_NETWORK_TIMEOUT (alias "default"): network_timeout: expected a duration '
        "of at least 1s, or null to turn it off, got '500ms'."
    )


def test_network_timeout_on_sqlite_is_an_error_in_the_layer_that_chose_sqlite(project: Any) -> None:
    project.write_config(
        {"databases": {"default": {"backend": "sqlite", "name": "db", "network_timeout": 5}}}
    )
    with pytest.raises(DbConfigError, match=r"network_timeout is not supported on SQLite"):
        project.load()


def test_network_timeout_in_defaults_is_ignored_by_sqlite(project: Any) -> None:
    project.write_config({"defaults": {"network_timeout": "10s"}, "databases": {"default": {"name": "db"}}})
    settings = project.databases()["default"]
    assert settings["ENGINE"] == "django.db.backends.sqlite3"
    assert "network_timeout" not in project.values()


# ------------------------------------------------------------------ on the real servers


def _settings(url: str, **keys: Any) -> dict[str, Any]:
    config = load_config(environ={}, overrides={"databases": {"net": {"url": url, **keys}}})
    return dict(config.databases()["net"])


@contextlib.contextmanager
def django_connection(settings: dict[str, Any], alias: str) -> Iterator[Any]:
    """A Django connection for `alias` (Django also wants a default alias), closed afterwards."""
    from django.db.utils import ConnectionHandler

    handler = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3"}, alias: settings})
    connection = handler[alias]
    try:
        connection.ensure_connection()
        yield connection
    finally:
        connection.close()


def _tcp_options(fd: int) -> tuple[int, int, int]:
    sock = socket.socket(fileno=fd)
    try:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )
    finally:
        sock.detach()


@pytest.mark.postgresql
def test_postgresql_connection_socket_has_the_tcp_options(shared_postgres: dict[str, Any]) -> None:
    url = "postgresql://{user}@{host}:{port}/{dbname}".format(**shared_postgres)
    with django_connection(_settings(url, network_timeout="20s"), "net") as connection:
        assert _tcp_options(connection.connection.pgconn.socket) == (1, 10, 20000)


@pytest.mark.mariadb
def test_mariadb_connection_socket_has_the_tcp_options(shared_mariadb: dict[str, Any]) -> None:
    url = "mysql://{user}@{host}:{port}/{database}".format(**shared_mariadb)
    with django_connection(_settings(url, network_timeout="20s"), "net") as connection:
        assert _tcp_options(connection.connection.fileno()) == (1, 10, 20000)


@contextlib.contextmanager
def black_hole(server: Any, *, after: float = 0.0) -> Iterator[None]:
    """Drop the server's packets (now, or `after` seconds from now); let them through at exit."""
    timer = threading.Timer(after, server.netns.black_hole)
    if after:
        timer.start()
    else:
        server.netns.black_hole()
    try:
        yield
    finally:
        if after:
            timer.join()
        server.netns.restore()


def _url(server: Any) -> str:
    return server.url().replace("mysql://", "mariadb://", 1)


def _fails_within_network_timeout(server: Any, sql: str, *, in_flight: bool) -> float:
    settings = _settings(_url(server), network_timeout=f"{NETWORK_TIMEOUT_S}s", statement_timeout="60s")
    with django_connection(settings, "net") as connection:
        assert query_one(connection, "SELECT 1") == 1
        with black_hole(server, after=1.0 if in_flight else 0.0):
            started = time.monotonic()
            with pytest.raises(OperationalError) as caught:
                query_one(connection, sql)
            elapsed = time.monotonic() - started - (1.0 if in_flight else 0.0)
    message = str(caught.value)
    assert f'Database "net": lost the connection to the server (network_timeout is {NETWORK_TIMEOUT_S}s)' in (
        message
    )
    # Not a quick reset: the server was silent and the timeout ended the wait.
    assert 1 < elapsed < NETWORK_TIMEOUT_S + MARGIN_S, f"failed after {elapsed:.1f} s: {message}"
    print(
        f"{server.kind}: {'in flight' if in_flight else 'sent after the drop'}: failed after {elapsed:.1f} s"
    )
    return elapsed


def _long_query_completes(server: Any, sql: str) -> None:
    settings = _settings(_url(server), network_timeout=f"{NETWORK_TIMEOUT_S}s", statement_timeout="60s")
    with django_connection(settings, "net") as connection:
        started = time.monotonic()
        query_one(connection, sql)
        assert time.monotonic() - started >= 2 * NETWORK_TIMEOUT_S


@pytest.mark.slow
@pytest.mark.postgresql
def test_postgresql_long_healthy_query_outlives_network_timeout(pg_in_netns: Any) -> None:
    _long_query_completes(pg_in_netns, f"SELECT pg_sleep({2 * NETWORK_TIMEOUT_S})")


@pytest.mark.slow
@pytest.mark.postgresql
def test_postgresql_query_sent_to_a_black_hole_fails_within_network_timeout(pg_in_netns: Any) -> None:
    _fails_within_network_timeout(pg_in_netns, "SELECT 1", in_flight=False)


@pytest.mark.slow
@pytest.mark.postgresql
def test_postgresql_query_in_flight_when_the_server_vanishes_fails_within_network_timeout(
    pg_in_netns: Any,
) -> None:
    _fails_within_network_timeout(pg_in_netns, "SELECT pg_sleep(30)", in_flight=True)


@pytest.mark.slow
@pytest.mark.mariadb
def test_mariadb_long_healthy_query_outlives_network_timeout(mariadb_in_netns: Any) -> None:
    _long_query_completes(mariadb_in_netns, f"SELECT SLEEP({2 * NETWORK_TIMEOUT_S})")


@pytest.mark.slow
@pytest.mark.mariadb
def test_mariadb_query_sent_to_a_black_hole_fails_within_network_timeout(mariadb_in_netns: Any) -> None:
    _fails_within_network_timeout(mariadb_in_netns, "SELECT 1", in_flight=False)


@pytest.mark.slow
@pytest.mark.mariadb
def test_mariadb_query_in_flight_when_the_server_vanishes_fails_within_network_timeout(
    mariadb_in_netns: Any,
) -> None:
    _fails_within_network_timeout(mariadb_in_netns, "SELECT SLEEP(30)", in_flight=True)
