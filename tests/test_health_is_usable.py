"""The engines defer to an `is_usable()` that is not Django's own: overridden, wrapped or patched.

Django's own tests (backends.base.test_base.ConnectionHealthChecksTests) patch
`is_usable` to fail a healthy connection; so may application code. The evidence
is the server's: a failed check makes Django open a new session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from tests.conftest import django_connection, query_one
from tests.test_health import new_request, rendered

SERVERS = [
    pytest.param("pg_plain_server", marks=pytest.mark.postgresql, id="postgresql"),
    pytest.param("mariadb_plain_server", marks=pytest.mark.mariadb, id="mariadb"),
]
SESSION_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}


def session_id(connection: Any) -> Any:
    return query_one(connection, SESSION_ID[connection.vendor])


@pytest.mark.parametrize("server_fixture", SERVERS)
def test_is_usable_patched_on_the_connection_is_called_and_obeyed(
    tmp_path: Path, request: pytest.FixtureRequest, server_fixture: str
) -> None:
    server = request.getfixturevalue(server_fixture)
    with django_connection(rendered(tmp_path, server.url())) as connection:
        before = session_id(connection)
        new_request(connection)
        with mock.patch.object(connection, "is_usable", return_value=False) as is_usable:
            after = session_id(connection)
            # One check per request: the next query keeps the new session.
            again = session_id(connection)
    assert (is_usable.call_count, after != before, again) == (1, True, after)


@pytest.mark.parametrize("server_fixture", SERVERS)
def test_is_usable_patched_on_the_class_is_called_and_obeyed(
    tmp_path: Path, request: pytest.FixtureRequest, server_fixture: str
) -> None:
    server = request.getfixturevalue(server_fixture)
    with django_connection(rendered(tmp_path, server.url())) as connection:
        before = session_id(connection)
        new_request(connection)
        with mock.patch.object(type(connection), "is_usable", return_value=False) as is_usable:
            after = session_id(connection)
    assert (is_usable.call_count, after != before) == (1, True)


@pytest.mark.parametrize("server_fixture", SERVERS)
def test_subclass_overriding_is_usable_has_it_called_on_every_request(
    tmp_path: Path, request: pytest.FixtureRequest, server_fixture: str
) -> None:
    server = request.getfixturevalue(server_fixture)
    with django_connection(rendered(tmp_path, server.url())) as stock:
        settings, alias = stock.settings_dict, stock.alias
        calls: list[bool] = []

        class Checked(type(stock)):  # type: ignore[misc]
            def is_usable(self) -> bool:
                usable = bool(super().is_usable())
                calls.append(usable)
                return usable

        connection = Checked(settings, alias)
        try:
            first = session_id(connection)
            for _ in range(3):
                new_request(connection)
                last = session_id(connection)
        finally:
            connection.close()
    assert (calls, last) == ([True, True, True], first)


@pytest.mark.parametrize("server_fixture", SERVERS)
def test_stock_is_usable_keeps_the_socket_check(
    tmp_path: Path, request: pytest.FixtureRequest, server_fixture: str
) -> None:
    server = request.getfixturevalue(server_fixture)
    with django_connection(rendered(tmp_path, server.url())) as connection:
        session_id(connection)
        new_request(connection)
        with mock.patch.object(connection, "socket_verdict", wraps=connection.socket_verdict) as verdict:
            connection.close_if_health_check_failed()
    assert (connection.is_usable_replaced(), verdict.call_count) == (False, 1)
