"""What the real PostgreSQL server reports for each session setting build_databases() renders."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import django_connection, query_one

pytestmark = pytest.mark.postgresql

ODD_SCHEMAS = ["Sales Data", 'it"s', "MiXeD", "back\\slash", "ünïcode", "select"]


def settings_for(project: Any, server: dict[str, Any], **keys: Any) -> dict[str, Any]:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "host": server["host"],
                    "port": server["port"],
                    "user": server["user"],
                    "name": server["dbname"],
                    **keys,
                }
            }
        }
    )
    return project.databases()["default"]


def show(connection: Any, setting: str) -> str:
    return str(query_one(connection, f"SHOW {setting}"))


def test_timeouts_read_only_and_application_name_reach_the_server(
    project: Any, shared_postgres: dict[str, Any]
) -> None:
    settings = settings_for(
        project,
        shared_postgres,
        statement_timeout="1500ms",
        lock_timeout="2s",
        idle_in_transaction_session_timeout="5min",
        application_name="shop web",
        read_only=True,
    )
    with django_connection(settings) as connection:
        assert [
            show(connection, s)
            for s in (
                "statement_timeout",
                "lock_timeout",
                "idle_in_transaction_session_timeout",
                "application_name",
                "default_transaction_read_only",
            )
        ] == ["1500ms", "2s", "5min", "shop web", "on"]


def test_statement_timeout_is_enforced_by_the_server(project: Any, shared_postgres: dict[str, Any]) -> None:
    from django.db import OperationalError

    settings = settings_for(project, shared_postgres, statement_timeout="200ms")
    with django_connection(settings) as connection, connection.cursor() as cursor:
        with pytest.raises(OperationalError, match="statement timeout"):
            cursor.execute("SELECT pg_sleep(2)")


def test_read_only_alias_refuses_writes_at_the_server(project: Any, shared_postgres: dict[str, Any]) -> None:
    from django.db import InternalError

    settings = settings_for(project, shared_postgres, read_only=True)
    with django_connection(settings) as connection, connection.cursor() as cursor:
        with pytest.raises(InternalError, match="read-only transaction"):
            cursor.execute("CREATE TEMP TABLE dbconfig_ro (id int)")


def test_odd_schema_names_survive_the_startup_options(project: Any, shared_postgres: dict[str, Any]) -> None:
    import psycopg

    suffix = uuid.uuid4().hex[:6]
    schemas = [f"{name} {suffix}" for name in ODD_SCHEMAS]
    with psycopg.connect(**shared_postgres, autocommit=True) as admin:
        for schema in schemas:
            admin.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(schema)))
        try:
            settings = settings_for(project, shared_postgres, search_path=[*schemas, "public"])
            with django_connection(settings) as connection:
                assert query_one(connection, "SELECT current_schemas(false)") == [*schemas, "public"]
                with connection.cursor() as cursor:
                    cursor.execute("CREATE TEMP TABLE probe (id int)")  # still a usable session
        finally:
            for schema in schemas:
                admin.execute(
                    psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema))
                )


def test_search_path_from_a_variable_reaches_the_server(
    project: Any, shared_postgres: dict[str, Any]
) -> None:
    url = "postgresql://{user}@{host}:{port}/{dbname}".format(**shared_postgres)
    settings = project.databases({"DATABASE_URL": url, "DBCONFIG_DEFAULT_SEARCH_PATH": "pg_catalog,public"})[
        "default"
    ]
    with django_connection(settings) as connection:
        assert show(connection, "search_path") == '"pg_catalog","public"'


def test_session_settings_cost_no_extra_query_per_connection(
    project: Any, shared_postgres: dict[str, Any]
) -> None:
    """They travel in the startup packet: Django runs no SET for them."""
    settings = settings_for(project, shared_postgres, statement_timeout="3s", search_path=["public"])
    with django_connection(settings) as connection:
        executed: list[str] = []

        def record(execute: Any, sql: str, *args: Any) -> Any:
            executed.append(sql)
            return execute(sql, *args)

        connection.close()
        with connection.execute_wrapper(record):
            connection.ensure_connection()
            assert show(connection, "statement_timeout") == "3s"
        assert executed == ["SHOW statement_timeout"]


def test_user_libpq_options_add_to_the_session_settings(
    project: Any, shared_postgres: dict[str, Any]
) -> None:
    settings = settings_for(
        project, shared_postgres, statement_timeout="4s", options={"options": "-c work_mem=8MB"}
    )
    with django_connection(settings) as connection:
        assert (show(connection, "statement_timeout"), show(connection, "work_mem")) == ("4s", "8MB")


def test_persistent_connection_defaults_are_in_effect(project: Any, shared_postgres: dict[str, Any]) -> None:
    settings = settings_for(project, shared_postgres)
    assert (settings["CONN_MAX_AGE"], settings["CONN_HEALTH_CHECKS"]) == (60, True)
    with django_connection(settings) as connection:
        assert connection.connection.info.get_parameters()["connect_timeout"] == "5"


def test_pool_opens_a_psycopg_pool(project: Any, shared_postgres: dict[str, Any]) -> None:
    import django

    if django.VERSION < (5, 1):
        pytest.skip("Django's pool needs Django 5.1")
    settings = settings_for(
        project, shared_postgres, pool={"min_size": 1, "max_size": 2}, statement_timeout="7s"
    )
    assert settings["CONN_MAX_AGE"] == 0
    with django_connection(settings) as connection:
        assert connection.pool is not None
        assert show(connection, "statement_timeout") == "7s"
        connection.close_pool()
