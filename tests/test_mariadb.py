"""What the real MariaDB server reports for each session setting build_databases() renders."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import django_connection, query_one

pytestmark = pytest.mark.mariadb


def settings_for(
    project: Any, server: dict[str, Any], backend: str = "mariadb", **keys: Any
) -> dict[str, Any]:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": backend,
                    "host": server["host"],
                    "port": server["port"],
                    "user": server["user"],
                    "name": server["database"],
                    **keys,
                }
            }
        }
    )
    return project.databases()["default"]


def test_timeouts_and_read_only_reach_the_server(project: Any, shared_mariadb: dict[str, Any]) -> None:
    settings = settings_for(
        project, shared_mariadb, statement_timeout="1500ms", lock_timeout="7s", read_only=True
    )
    with django_connection(settings) as connection:
        assert [
            query_one(connection, f"SELECT @@SESSION.{v}")
            for v in (
                "max_statement_time",
                "innodb_lock_wait_timeout",
                "lock_wait_timeout",
                "tx_read_only",
            )
        ] == [1.5, 7, 7, 1]


def test_sub_second_lock_timeout_rounds_up_never_down(project: Any, shared_mariadb: dict[str, Any]) -> None:
    settings = settings_for(project, shared_mariadb, lock_timeout="200ms")
    with django_connection(settings) as connection:
        assert query_one(connection, "SELECT @@SESSION.innodb_lock_wait_timeout") == 1


def test_statement_timeout_is_enforced_by_the_server(project: Any, shared_mariadb: dict[str, Any]) -> None:
    from django.db import OperationalError

    settings = settings_for(project, shared_mariadb, statement_timeout="300ms")
    with django_connection(settings) as connection, connection.cursor() as cursor:
        with pytest.raises(OperationalError, match="max_statement_time"):
            cursor.execute("SELECT SLEEP(2) FROM (SELECT 1) AS t")


def test_read_only_alias_refuses_writes_at_the_server(project: Any, shared_mariadb: dict[str, Any]) -> None:
    from django.db import OperationalError

    settings = settings_for(project, shared_mariadb, read_only=True)
    with django_connection(settings) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")  # reads work
        with pytest.raises(OperationalError, match="READ ONLY"):
            cursor.execute("CREATE TABLE IF NOT EXISTS dbconfig_ro_real (id int)")


def test_mysql_backend_on_a_mariadb_server_sets_lock_timeouts(
    project: Any, shared_mariadb: dict[str, Any]
) -> None:
    settings = settings_for(project, shared_mariadb, backend="mysql", lock_timeout="9s")
    with django_connection(settings) as connection:
        assert query_one(connection, "SELECT @@SESSION.innodb_lock_wait_timeout") == 9


def test_url_with_mariadb_scheme_connects(project: Any, shared_mariadb: dict[str, Any]) -> None:
    url = "mariadb://{user}@{host}:{port}/{database}?statement_timeout=2s".format(**shared_mariadb)
    settings = project.databases({"DATABASE_URL": url})["default"]
    with django_connection(settings) as connection:
        assert query_one(connection, "SELECT @@SESSION.max_statement_time") == 2.0
        assert query_one(connection, "SELECT DATABASE()") == shared_mariadb["database"]


def test_sslmode_disable_connects_without_tls(project: Any, shared_mariadb: dict[str, Any]) -> None:
    settings = settings_for(project, shared_mariadb, sslmode="disable")
    assert settings["OPTIONS"]["ssl_mode"] == "DISABLED"
    with django_connection(settings) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cursor.fetchone()[1] == ""
