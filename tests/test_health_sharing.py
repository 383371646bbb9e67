"""The health check and other users of the same session: threads sharing a connection, and
notifications that arrive just before the server closes it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig.backends.base.health import Verdict, socket_readable
from tests.conftest import django_connection, query_one
from tests.test_health import DJANGO, Spy, new_request, pg_gone, rendered, wait_for

QUERIES = 5000
# Far above what the queries take on a loaded machine; reached only by a deadlock.
DEADLOCK_SECONDS = 60


def share_between_threads(connection: Any, server: Any) -> tuple[int, int, list[BaseException]]:
    """One thread queries, another runs request cycles, on one connection; both check every reply.

    Returns the queries and requests done and any errors. On a deadlock the backend
    is terminated, so the threads end, and the test fails.
    """
    errors: list[BaseException] = []
    done = {"queries": 0, "requests": 0}
    finished = threading.Event()

    def querying() -> None:
        try:
            for number in range(QUERIES):
                assert query_one(connection, f"SELECT {number}") == number
                done["queries"] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished.set()

    def requesting() -> None:
        try:
            number = 0
            while not finished.is_set():
                number += 1
                new_request(connection)
                assert query_one(connection, f"SELECT -{number}") == -number
                new_request(connection)
                done["requests"] += 1
        except BaseException as exc:
            errors.append(exc)

    connection.inc_thread_sharing()
    pid = connection.connection.info.backend_pid
    threads = [threading.Thread(target=target, daemon=True) for target in (querying, requesting)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DEADLOCK_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        server.psql("SELECT pg_terminate_backend(%s)", [pid])
        for thread in threads:
            thread.join(10)
        pytest.fail(f"deadlock after {done['queries']} queries and {done['requests']} requests")
    connection.dec_thread_sharing()
    return done["queries"], done["requests"], errors


@pytest.mark.postgresql
@pytest.mark.parametrize(
    "engine", [None, DJANGO["postgresql"]], ids=["our engine", "django engine (control)"]
)
def test_pg_connection_shared_between_threads_never_deadlocks_or_swaps_replies(
    tmp_path: Path, pg_plain_server: Any, engine: str | None
) -> None:
    environ = {"DBCONFIG_DEFAULT_ENGINE": engine} if engine else {}
    with django_connection(rendered(tmp_path, pg_plain_server.url(), **environ)) as connection:
        queries, requests, errors = share_between_threads(connection, pg_plain_server)
    assert (queries, errors) == (QUERIES, [])
    assert requests > 0


@pytest.mark.mariadb
def test_mariadb_connection_shared_between_threads_gets_djangos_check(
    tmp_path: Path, mariadb_plain_server: Any
) -> None:
    with django_connection(rendered(tmp_path, mariadb_plain_server.url())) as connection:
        alone = connection.socket_verdict()
        connection.inc_thread_sharing()
        shared = connection.socket_verdict()
        connection.dec_thread_sharing()
    # Another thread may be reading its reply from the socket: readable is not a close there.
    assert (alone, shared) == (Verdict.HEALTHY, Verdict.UNSURE)


@pytest.mark.postgresql
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_pg_notification_received_before_the_server_closes_is_delivered(
    tmp_path: Path, request: pytest.FixtureRequest, tls: bool
) -> None:
    server = request.getfixturevalue("pg_tls_server" if tls else "pg_plain_server")
    environ = (
        {"DBCONFIG_DEFAULT_SSLMODE": "verify-full", "DBCONFIG_DEFAULT_SSLROOTCERT": str(server.ca_path)}
        if tls
        else {}
    )
    received: list[str] = []
    with django_connection(rendered(tmp_path, server.url(), **environ)) as connection:
        connection.connection.add_notify_handler(lambda notify: received.append(notify.payload))
        with connection.cursor() as cursor:
            cursor.execute("LISTEN dbconfig_goodbye")
        spy = Spy(connection)
        pid = connection.connection.info.backend_pid
        server.psql("NOTIFY dbconfig_goodbye, 'last words'")
        wait_for(lambda: socket_readable(connection.connection.fileno()), "the notification")
        server.psql("SELECT pg_terminate_backend(%s)", [pid])
        wait_for(lambda: pg_gone(server, pid), "the backend to exit")
        new_request(connection)
        connection.close_if_health_check_failed()
        closed = connection.connection is None
    assert (received, spy.verdicts, spy.calls, closed) == (["last words"], [Verdict.DEAD], 0, True)
