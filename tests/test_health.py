"""The engines' health check: a closed connection is found by looking at the socket, a live
one is kept without a query, and anything unclear goes to Django's own check.

Server-side evidence for "no round trip": on PostgreSQL the backend's last statement in
pg_stat_activity, on MariaDB the server's count of pings (Com_admin_commands).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import build_databases
from django_dbconfig.backends.base.health import SocketWatch, Verdict, socket_readable
from tests.conftest import django_connection, query_one

OURS = {"postgresql": "django_dbconfig.backends.postgresql", "mysql": "django_dbconfig.backends.mysql"}
DJANGO = {"postgresql": "django.db.backends.postgresql", "mysql": "django.db.backends.mysql"}


def rendered(tmp_path: Path, url: str, **environ: str) -> dict[str, Any]:
    """What build_databases() makes of one URL (plus variables), nothing else read."""
    return dict(build_databases(tmp_path, environ={"DATABASE_URL": url, **environ})["default"])


def tls_environ(server: Any, tls: bool) -> dict[str, str]:
    """Variables for a verified TLS connection to a throwaway server, or none."""
    if not tls:
        return {}
    return {"DBCONFIG_DEFAULT_SSLMODE": "verify-full", "DBCONFIG_DEFAULT_SSLROOTCERT": str(server.ca_path)}


def new_request(connection: Any) -> None:
    """What Django's request_started handler does to each connection."""
    connection.close_if_unusable_or_obsolete()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Spy:
    """Records the engine's verdicts and counts Django's round-trip checks; both still run."""

    def __init__(self, connection: Any) -> None:
        self.calls = 0
        self.verdicts: list[Verdict] = []
        round_trip_check, socket_verdict = connection.round_trip_check, connection.socket_verdict

        def counted() -> None:
            self.calls += 1
            round_trip_check()

        def recorded() -> Verdict:
            verdict: Verdict = socket_verdict()
            self.verdicts.append(verdict)
            return verdict

        connection.round_trip_check = counted
        connection.socket_verdict = recorded


# ------------------------------------------------------------------ without a server


@pytest.mark.parametrize(
    ("url", "family"),
    [
        ("postgres://app:app-secret-pw@db.internal/app", "postgresql"),
        ("mysql://app:app-secret-pw@db.internal/app", "mysql"),
        ("mariadb://app:app-secret-pw@db.internal/app", "mysql"),
    ],
)
def test_build_databases_uses_the_socket_checking_engine_by_default(
    tmp_path: Path, url: str, family: str
) -> None:
    settings = rendered(tmp_path, url)
    assert (settings["ENGINE"], settings["CONN_MAX_AGE"], settings["CONN_HEALTH_CHECKS"]) == (
        OURS[family],
        60,
        True,
    )


@pytest.mark.parametrize(
    ("url", "family"),
    [("postgres://app@db.internal/app", "postgresql"), ("mysql://app@db.internal/app", "mysql")],
)
def test_engine_key_brings_back_djangos_own_backend(tmp_path: Path, url: str, family: str) -> None:
    settings = rendered(tmp_path, url, DBCONFIG_DEFAULT_ENGINE=DJANGO[family])
    assert settings["ENGINE"] == DJANGO[family]


def test_conn_health_checks_false_turns_every_check_off(tmp_path: Path) -> None:
    settings = rendered(
        tmp_path, "postgres://app@db.internal/app", DBCONFIG_DEFAULT_CONN_HEALTH_CHECKS="false"
    )
    assert settings["CONN_HEALTH_CHECKS"] is False


def test_importing_the_package_imports_no_driver_and_no_engine() -> None:
    code = (
        "import sys, django_dbconfig; "
        "print(sorted(m for m in ('psycopg', 'MySQLdb', 'django_dbconfig.backends.postgresql.base',"
        " 'django_dbconfig.backends.mysql.base') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


def test_socket_readable_is_false_while_the_peer_is_silent(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    assert socket_readable(socket_pair[0].fileno()) is False


def test_socket_readable_is_true_once_the_peer_sends_or_closes(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = socket_pair
    peer.sendall(b"E")
    sent = socket_readable(ours.fileno())
    ours.recv(1)
    peer.close()
    assert (sent, socket_readable(ours.fileno())) == (True, True)


def test_socket_watch_follows_the_connection_to_a_new_descriptor() -> None:
    watch = SocketWatch()
    first, first_peer = socket.socketpair()
    second, second_peer = socket.socketpair()
    try:
        first_peer.sendall(b"E")
        seen = [watch.readable(first.fileno()), watch.readable(second.fileno())]
        second_peer.close()
        seen.append(watch.readable(second.fileno()))
    finally:
        for sock in (first, first_peer, second, second_peer):
            sock.close()
    assert seen == [True, False, True]


def test_socket_readable_never_waits(socket_pair: tuple[socket.socket, socket.socket]) -> None:
    start = time.perf_counter()
    for _ in range(1000):
        socket_readable(socket_pair[0].fileno())
    assert time.perf_counter() - start < 0.5


# ------------------------------------------------------------------------- PostgreSQL


def pg_last_statement(server: Any, pid: int) -> str | None:
    rows = server.psql("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
    return rows[0][0] if rows else None


def pg_gone(server: Any, pid: int) -> bool:
    return not server.psql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])


@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("engine", "last_statement"),
    [(None, "SELECT 'marker'"), (DJANGO["postgresql"], "SELECT 1")],
    ids=["our engine", "django engine (control)"],
)
def test_pg_healthy_idle_connection_is_kept_and_ours_sends_no_query(
    tmp_path: Path, pg_plain_server: Any, engine: str | None, last_statement: str
) -> None:
    environ = {"DBCONFIG_DEFAULT_ENGINE": engine} if engine else {}
    settings = rendered(tmp_path, pg_plain_server.url(), **environ)
    with django_connection(settings) as connection:
        query_one(connection, "SELECT 'marker'")
        pid = connection.connection.info.backend_pid
        new_request(connection)
        # Opening a cursor runs the health check and sends nothing else.
        connection.cursor().close()
        assert connection.connection.info.backend_pid == pid
        assert pg_last_statement(pg_plain_server, pid) == last_statement


@pytest.mark.postgresql
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_pg_terminated_backend_is_found_without_a_round_trip(
    tmp_path: Path, request: pytest.FixtureRequest, tls: bool
) -> None:
    server = request.getfixturevalue("pg_tls_server" if tls else "pg_plain_server")
    settings = rendered(tmp_path, server.url(), **tls_environ(server, tls))
    with django_connection(settings) as connection:
        assert connection.connection.pgconn.ssl_in_use is tls
        spy = Spy(connection)
        pid = connection.connection.info.backend_pid
        server.psql("SELECT pg_terminate_backend(%s)", [pid])
        wait_for(lambda: pg_gone(server, pid), "the backend to exit")
        wait_for(lambda: socket_readable(connection.connection.fileno()), "the close")
        new_request(connection)
        connection.close_if_health_check_failed()
        closed = connection.connection is None
        new_pid = query_one(connection, "SELECT pg_backend_pid()")
    assert (spy.verdicts, closed, spy.calls) == ([Verdict.DEAD], True, 0)
    assert new_pid != pid


@pytest.mark.postgresql
def test_pg_notification_on_an_idle_listener_is_not_taken_for_a_close(
    tmp_path: Path, pg_plain_server: Any
) -> None:
    settings = rendered(tmp_path, pg_plain_server.url())
    received: list[str] = []
    with django_connection(settings) as connection:
        connection.connection.add_notify_handler(lambda notify: received.append(notify.payload))
        with connection.cursor() as cursor:
            cursor.execute("LISTEN dbconfig_health")
        spy = Spy(connection)
        pid = connection.connection.info.backend_pid
        pg_plain_server.psql("NOTIFY dbconfig_health, 'hello'")
        wait_for(lambda: socket_readable(connection.connection.fileno()), "the notification")
        new_request(connection)
        connection.close_if_health_check_failed()
        kept = connection.connection is not None and connection.connection.info.backend_pid == pid
    # Unsure, so Django's own check ran; the notification reached the handler.
    assert (spy.verdicts, spy.calls, kept, received) == ([Verdict.UNSURE], 1, True, ["hello"])


@pytest.mark.postgresql
def test_pg_connection_in_a_transaction_is_left_to_djangos_check(
    tmp_path: Path, pg_plain_server: Any
) -> None:
    settings = rendered(tmp_path, pg_plain_server.url())
    with django_connection(settings) as connection:
        connection.set_autocommit(False)
        query_one(connection, "SELECT 1")
        in_transaction = connection.socket_verdict()
        connection.rollback()
        connection.set_autocommit(True)
        idle = connection.socket_verdict()
    assert (in_transaction, idle) == (Verdict.UNSURE, Verdict.HEALTHY)


@pytest.mark.postgresql
def test_pg_autocommit_off_before_any_query_keeps_the_socket_check(
    tmp_path: Path, pg_plain_server: Any
) -> None:
    settings = rendered(tmp_path, pg_plain_server.url())
    with django_connection(settings) as connection:
        connection.set_autocommit(False)
        # No query yet: psycopg has not begun a transaction, the session is idle.
        before_query = connection.socket_verdict()
        query_one(connection, "SELECT 1")
        after_query = connection.socket_verdict()
        connection.rollback()
        connection.set_autocommit(True)
    assert (before_query, after_query) == (Verdict.HEALTHY, Verdict.UNSURE)


# ---------------------------------------------------------------------------- MariaDB


def pings(server: Any) -> int:
    """The server's count of admin commands, which includes every COM_PING."""
    rows = server.sql("SHOW GLOBAL STATUS LIKE 'Com_admin_commands'")
    return int(rows[0][1])


@pytest.mark.mariadb
@pytest.mark.parametrize(
    ("engine", "expected_pings"),
    [(None, 0), (DJANGO["mysql"], 1)],
    ids=["our engine", "django engine (control)"],
)
def test_mariadb_healthy_idle_connection_is_kept_and_ours_sends_no_ping(
    tmp_path: Path, mariadb_plain_server: Any, engine: str | None, expected_pings: int
) -> None:
    environ = {"DBCONFIG_DEFAULT_ENGINE": engine} if engine else {}
    settings = rendered(tmp_path, mariadb_plain_server.url(), **environ)
    with django_connection(settings) as connection:
        thread_id = query_one(connection, "SELECT CONNECTION_ID()")
        before = pings(mariadb_plain_server)
        new_request(connection)
        connection.cursor().close()
        after = pings(mariadb_plain_server)
        assert connection.connection.thread_id() == thread_id
    assert after - before == expected_pings


@pytest.mark.mariadb
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_mariadb_killed_connection_is_found_without_a_round_trip(
    tmp_path: Path, request: pytest.FixtureRequest, tls: bool
) -> None:
    server = request.getfixturevalue("mariadb_tls_server" if tls else "mariadb_plain_server")
    url = server.url().replace("mysql://", "mariadb://", 1)
    settings = rendered(tmp_path, url, **tls_environ(server, tls))
    with django_connection(settings) as connection:
        with connection.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert bool(cursor.fetchone()[1]) is tls
        spy = Spy(connection)
        thread_id = query_one(connection, "SELECT CONNECTION_ID()")
        server.sql(f"KILL {int(thread_id)}")
        wait_for(lambda: socket_readable(connection.connection.fileno()), "the close")
        new_request(connection)
        connection.close_if_health_check_failed()
        closed = connection.connection is None
        new_thread_id = query_one(connection, "SELECT CONNECTION_ID()")
    assert (spy.verdicts, closed, spy.calls) == ([Verdict.DEAD], True, 0)
    assert new_thread_id != thread_id


@pytest.mark.mariadb
def test_mariadb_connection_in_a_transaction_is_left_to_djangos_check(
    tmp_path: Path, mariadb_plain_server: Any
) -> None:
    settings = rendered(tmp_path, mariadb_plain_server.url())
    with django_connection(settings) as connection:
        connection.set_autocommit(False)
        in_transaction = connection.socket_verdict()
        connection.rollback()
        connection.set_autocommit(True)
        idle = connection.socket_verdict()
    assert (in_transaction, idle) == (Verdict.UNSURE, Verdict.HEALTHY)
