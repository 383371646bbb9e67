"""`manage.py dbshell` runs the real psql and mariadb clients with the alias's session
settings, TLS and read-only mode, read back from the server through the client itself."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_dbconfig import build_databases
from tests.helpers import registered

SCHEMA = 'Odd "Schema" x'


def entry(tmp_path: Path, url: str, **environ: str) -> dict[str, Any]:
    return dict(build_databases(tmp_path, environ={"DATABASE_URL": url, **environ})["default"])


def dbshell(capfd: pytest.CaptureFixture[str], alias: str, *parameters: str) -> list[str]:
    """Run dbshell for `alias` with the client's own parameters; its output lines."""
    capfd.readouterr()
    call_command("dbshell", "--database", alias, "--", *parameters)
    return capfd.readouterr().out.splitlines()


@pytest.fixture
def pg_schema(shared_postgres: dict[str, Any]) -> Any:
    """A schema with an odd name and a table in it, on the shared server's `test` database."""
    import psycopg

    table = f"t_{uuid.uuid4().hex[:8]}"
    schema = f"{SCHEMA} {uuid.uuid4().hex[:6]}"
    quoted = '"' + schema.replace('"', '""') + '"'
    with psycopg.connect(**shared_postgres, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {quoted}")  # type: ignore[arg-type]
        conn.execute(f"CREATE TABLE {quoted}.{table} (id integer)")  # type: ignore[arg-type]
    yield schema, table
    with psycopg.connect(**shared_postgres, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {quoted} CASCADE")  # type: ignore[arg-type]


@pytest.mark.postgresql
def test_psql_gets_the_session_settings_and_read_only_mode(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], pg_schema: Any
) -> None:
    schema, table = pg_schema
    settings = entry(
        tmp_path,
        "postgresql://postgres@127.0.0.1:5432/test",
        DBCONFIG_DEFAULT_SEARCH_PATH=f"{schema},public",
        DBCONFIG_DEFAULT_STATEMENT_TIMEOUT="7s",
        DBCONFIG_DEFAULT_LOCK_TIMEOUT="3s",
        DBCONFIG_DEFAULT_APPLICATION_NAME="dbshell check",
        DBCONFIG_DEFAULT_READ_ONLY="true",
    )
    with registered({"pg": settings}):
        lines = dbshell(
            capfd,
            "pg",
            "-At",
            "-c",
            "SHOW search_path",
            "-c",
            "SHOW statement_timeout",
            "-c",
            "SHOW lock_timeout",
            "-c",
            "SHOW application_name",
            "-c",
            "SHOW transaction_read_only",
            "-c",
            f"SELECT count(*) FROM {table}",  # found through the search_path
        )
        assert lines == [
            '"' + schema.replace('"', '""') + '","public"',
            "7s",
            "3s",
            "dbshell check",
            "on",
            "0",
        ]
        with pytest.raises(CommandError, match="returned non-zero exit status"):
            dbshell(capfd, "pg", "-v", "ON_ERROR_STOP=1", "-c", f"INSERT INTO {table} VALUES (1)")
        assert "cannot execute INSERT in a read-only transaction" in capfd.readouterr().err


@pytest.mark.postgresql
def test_psql_connects_with_verified_tls(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], pg_tls_server: Any
) -> None:
    settings = entry(
        tmp_path,
        pg_tls_server.url(),
        DBCONFIG_DEFAULT_SSLMODE="verify-full",
        DBCONFIG_DEFAULT_SSLROOTCERT=str(pg_tls_server.ca_path),
    )
    query = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    with registered({"pg": settings}):
        (line,) = dbshell(capfd, "pg", "-At", "-c", query)
        assert line.startswith("t|TLSv1.")
        # With the wrong CA, verify-full refuses the server: psql used the sslmode and root certificate.
        wrong = entry(
            tmp_path,
            pg_tls_server.url(),
            DBCONFIG_DEFAULT_SSLMODE="verify-full",
            DBCONFIG_DEFAULT_SSLROOTCERT=str(pg_tls_server.tls_material.wrong_ca_path),
        )
    with registered({"wrong": wrong}):
        with pytest.raises(CommandError):
            dbshell(capfd, "wrong", "-At", "-c", "SELECT 1")
        assert "certificate verify failed" in capfd.readouterr().err


@pytest.mark.mariadb
def test_mariadb_client_gets_the_session_settings_tls_and_read_only_mode(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], mariadb_tls_server: Any
) -> None:
    server = mariadb_tls_server
    table = f"t_{uuid.uuid4().hex[:8]}"
    server.sql(f"CREATE TABLE {table} (id integer)")
    settings = entry(
        tmp_path,
        server.url(),
        DBCONFIG_DEFAULT_BACKEND="mariadb",
        DBCONFIG_DEFAULT_SSLMODE="verify-full",
        DBCONFIG_DEFAULT_SSLROOTCERT=str(server.ca_path),
        DBCONFIG_DEFAULT_STATEMENT_TIMEOUT="7s",
        DBCONFIG_DEFAULT_LOCK_TIMEOUT="3s",
        DBCONFIG_DEFAULT_READ_ONLY="true",
    )
    try:
        with registered({"mdb": settings}):
            lines = dbshell(
                capfd,
                "mdb",
                "--batch",
                "--skip-column-names",
                "-e",
                "SELECT @@session.tx_read_only, @@session.max_statement_time, @@session.lock_wait_timeout; "
                "SELECT VARIABLE_VALUE <> '' FROM information_schema.SESSION_STATUS "
                "WHERE VARIABLE_NAME = 'Ssl_cipher'",
            )
            assert lines == ["1\t7.000000\t3", "1"]
            with pytest.raises(CommandError, match="returned non-zero exit status"):
                dbshell(capfd, "mdb", "-e", f"INSERT INTO {table} VALUES (1)")
            assert "read only transaction" in capfd.readouterr().err.lower()
    finally:
        server.sql(f"DROP TABLE {table}")


@pytest.mark.mariadb
def test_mariadb_client_refuses_a_server_without_tls_when_tls_is_required(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], shared_mariadb: dict[str, Any]
) -> None:
    """The shared server has no TLS: sslmode require must not fall back to plain text.

    MariaDB's client 10.11 connects in plain text despite --ssl; the init_command's
    guard refuses the session on the server all the same.
    """
    settings = entry(tmp_path, "mariadb://root@127.0.0.1:3306/test", DBCONFIG_DEFAULT_SSLMODE="require")
    with registered({"mdb": settings}):
        with pytest.raises(CommandError):
            dbshell(capfd, "mdb", "-e", "SELECT 1")
    assert "DBCONFIG_TLS_REQUIRED_BUT_SESSION_NOT_ENCRYPTED" in capfd.readouterr().err


def test_the_clients_get_the_settings_in_their_own_form(tmp_path: Path) -> None:
    """What the engines hand to psql and mariadb, as a reader checks it."""
    from django_dbconfig.backends.mysql.client import DatabaseClient as MySQLClient
    from django_dbconfig.backends.postgresql.client import DatabaseClient as PostgreSQLClient

    pg = entry(
        tmp_path,
        "postgresql://web:web-secret@db.internal/app",
        DBCONFIG_DEFAULT_SEARCH_PATH="a b,public",
        DBCONFIG_DEFAULT_READ_ONLY="true",
        DBCONFIG_DEFAULT_APPLICATION_NAME="shop",
    )
    args, env = PostgreSQLClient.settings_to_cmd_args_env({"OPTIONS": {}, **pg}, ["-c", "SELECT 1"])
    assert args == ["psql", "-U", "web", "-h", "db.internal", "-p", "5432", "-c", "SELECT 1", "app"]
    assert env == {
        "PGPASSWORD": "web-secret",
        "PGOPTIONS": r'-c search_path="a\ b","public" -c default_transaction_read_only=on',
        "PGAPPNAME": "shop",
        "PGCONNECT_TIMEOUT": "5",
    }
    mdb = entry(tmp_path, "mysql://web@db.internal/app", DBCONFIG_DEFAULT_READ_ONLY="true")
    args, env = MySQLClient.settings_to_cmd_args_env({"OPTIONS": {}, "PASSWORD": "", **mdb}, [])
    assert args[1:3] == ["--init-command=SET SESSION transaction_read_only=1", "--connect-timeout=5"]
