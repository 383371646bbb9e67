"""read_only: true is enforced by the server, and the refusal names the alias.

Uses the machine's shared servers (database `test`), in a schema or table of its own
that is dropped afterwards.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import InternalError, OperationalError, connections
from django.test import override_settings

from django_dbconfig import build_databases
from django_dbconfig.routers import DatabaseRouter, ReadOnlyDatabaseError, connect_signals
from tests.apps.reports.models import DailyTotal
from tests.test_router import registered


def _pg_admin(postgres: dict[str, Any], sql: str) -> None:
    import psycopg

    with psycopg.connect(**postgres, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def pg_schema(shared_postgres: dict[str, Any]) -> Iterator[str]:
    """A fresh schema holding reports_dailytotal, dropped afterwards."""
    schema = f"dbconfig_ro_{uuid.uuid4().hex[:10]}"
    _pg_admin(
        shared_postgres,
        f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".reports_dailytotal '
        "(id bigserial PRIMARY KEY, day date NOT NULL, total integer NOT NULL)",
    )
    try:
        yield schema
    finally:
        _pg_admin(shared_postgres, f'DROP SCHEMA "{schema}" CASCADE')


def pg_databases(tmp_path: Path, postgres: dict[str, Any], schema: str, *, read_only: bool) -> Any:
    url = f"postgresql://{postgres['user']}:app-secret-pw@{postgres['host']}:{postgres['port']}/{postgres['dbname']}"
    # Trust authentication: the password is never asked for, so it only has to stay out of errors.
    return build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": ":memory:"},
                "ro_analytics": {
                    "url": url,
                    "read_only": read_only,
                    "search_path": [schema],
                    "conn_max_age": 0,
                },
            }
        },
    )


@pytest.mark.postgresql
def test_postgresql_refuses_writes_and_the_error_names_the_alias(
    tmp_path: Path, shared_postgres: dict[str, Any], pg_schema: str, django_db_blocker: Any
) -> None:
    databases = pg_databases(tmp_path, shared_postgres, pg_schema, read_only=True)
    router = DatabaseRouter(routes={"reports": "ro_analytics"}, replicas={}, databases=databases)
    with (
        django_db_blocker.unblock(),
        registered({"ro_analytics": databases["ro_analytics"]}),
        override_settings(DATABASE_ROUTERS=[router]),
    ):
        with connections["ro_analytics"].cursor() as cursor:
            cursor.execute("SHOW default_transaction_read_only")
            assert cursor.fetchone()[0] == "on"
        assert DailyTotal.objects.count() == 0  # reads work
        with pytest.raises(ReadOnlyDatabaseError) as caught:
            DailyTotal.objects.create(day=datetime.date(2024, 1, 1), total=1)
    assert str(caught.value) == (
        "database alias 'ro_analytics' is read-only (read_only: true in "
        "override: databases.ro_analytics.read_only): the server refused this write "
        "(cannot execute INSERT in a read-only transaction). "
        "Send writes to another alias, or remove read_only for 'ro_analytics'."
    )
    assert isinstance(caught.value, InternalError)  # what Django raises for it, still
    assert getattr(caught.value.__cause__.__cause__, "sqlstate", None) == "25006"  # type: ignore[union-attr]
    assert "app-secret-pw" not in str(caught.value) + repr(caught.value)


@pytest.mark.postgresql
def test_postgresql_alias_without_read_only_accepts_the_same_write(
    tmp_path: Path, shared_postgres: dict[str, Any], pg_schema: str, django_db_blocker: Any
) -> None:
    databases = pg_databases(tmp_path, shared_postgres, pg_schema, read_only=False)
    router = DatabaseRouter(routes={"reports": "ro_analytics"}, replicas={}, databases=databases)
    with (
        django_db_blocker.unblock(),
        registered({"ro_analytics": databases["ro_analytics"]}),
        override_settings(DATABASE_ROUTERS=[router]),
    ):
        DailyTotal.objects.create(day=datetime.date(2024, 1, 1), total=1)
        assert DailyTotal.objects.count() == 1
        assert connections["ro_analytics"].execute_wrappers == []


@pytest.fixture
def mariadb_table(shared_mariadb: dict[str, Any]) -> Iterator[str]:
    import MySQLdb

    table = f"dbconfig_ro_{uuid.uuid4().hex[:10]}"
    conn = MySQLdb.connect(**shared_mariadb, connect_timeout=5, autocommit=True)
    try:
        conn.cursor().execute(f"CREATE TABLE `{table}` (id integer PRIMARY KEY)")
        yield table
    finally:
        conn.cursor().execute(f"DROP TABLE IF EXISTS `{table}`")
        conn.close()


@pytest.mark.mariadb
@pytest.mark.parametrize("read_only", [True, False], ids=["read_only", "writable"])
# backend "mysql" renders MySQL's transaction_read_only (the engine rewrites it for MariaDB):
# the guard must recognise both names, or the refusal is Django's plain OperationalError.
@pytest.mark.parametrize("backend", ["mariadb", "mysql"])
def test_mariadb_refuses_writes_and_the_error_names_the_alias(
    tmp_path: Path,
    shared_mariadb: dict[str, Any],
    mariadb_table: str,
    django_db_blocker: Any,
    read_only: bool,
    backend: str,
) -> None:
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": ":memory:"},
                "ro_mariadb": {
                    "backend": backend,
                    "host": shared_mariadb["host"],
                    "port": shared_mariadb["port"],
                    "user": shared_mariadb["user"],
                    "name": shared_mariadb["database"],
                    "read_only": read_only,
                    "conn_max_age": 0,
                },
            }
        },
    )
    if read_only:  # each backend's own name for it
        variable = {"mariadb": "tx_read_only", "mysql": "transaction_read_only"}[backend]
        assert databases["ro_mariadb"]["OPTIONS"]["init_command"] == f"SET SESSION {variable}=1"
    connect_signals()  # as the router (or the app's ready()) does
    with django_db_blocker.unblock(), registered({"ro_mariadb": databases["ro_mariadb"]}):
        connection = connections["ro_mariadb"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT @@tx_read_only")
            assert cursor.fetchone()[0] == int(read_only)
        if not read_only:
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO `{mariadb_table}` VALUES (1)")
            return
        with pytest.raises(ReadOnlyDatabaseError) as caught, connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO `{mariadb_table}` VALUES (1)")
    assert str(caught.value) == (
        "database alias 'ro_mariadb' is read-only (read_only: true in "
        "override: databases.ro_mariadb.read_only): the server refused this write "
        "(Cannot execute statement in a READ ONLY transaction). "
        "Send writes to another alias, or remove read_only for 'ro_mariadb'."
    )
    assert isinstance(caught.value, OperationalError)  # what Django raises for it, still
    assert caught.value.__cause__.__cause__.args[0] == 1792  # type: ignore[union-attr]
