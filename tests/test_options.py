"""A user's `options` never silently replace what the keys generate, and belong to a backend.

The merge rules (docs/configuration.md, "options"): equal values are one value; objects
(MySQL's `ssl`) merge part by part; a MySQL `init_command` joins the generated SET after
its assignments; a libpq `options` string adds its switches after the generated ones; an
option a built-in default generates (connect_timeout) is replaced; anything else, and any
setting both would set, is a DbConfigError naming both sources.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import build_databases
from django_dbconfig.checks.dbcheck import refused_option
from django_dbconfig.checks.static import deploy_problems, static_problems
from django_dbconfig.core.errors import DbConfigError
from tests.conftest import django_connection, query_one
from tests.servers import MariaDBServer
from tests.test_dbcheck import dbcheck_json

PG = {"backend": "postgresql", "host": "db.internal", "name": "app", "user": "app"}
MARIADB = {"backend": "mariadb", "host": "db.internal", "name": "app", "user": "app"}
SECRET = "s3cr3t-value-9f8e"


def build(project: Any, alias: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    project.write_config({"databases": {"default": alias}})
    return project.databases(environ)["default"]


def error_of(project: Any, alias: dict[str, Any]) -> str:
    project.write_config({"databases": {"default": alias}})
    with pytest.raises(DbConfigError) as caught:
        project.load()
    return str(caught.value)


# ------------------------------------------------------------------------ MySQL / MariaDB


def test_a_user_init_command_runs_in_the_generated_set_after_it(project: Any) -> None:
    settings = build(
        project,
        {
            **MARIADB,
            "sslmode": "require",
            "read_only": True,
            "statement_timeout": "5s",
            "options": {"init_command": "SET sql_mode='STRICT_TRANS_TABLES'"},
        },
    )
    command = settings["OPTIONS"]["init_command"]
    assert command.startswith("SET SESSION sql_mode = IF(")  # the TLS guard first
    assert command.endswith(", max_statement_time=5, tx_read_only=1, sql_mode='STRICT_TRANS_TABLES'")
    rows = {row.key: row for row in project.load().explain("default")}
    assert rows["options.init_command"].value == command
    assert rows["options.init_command"].source == (
        "dbconfig.json: databases.default.options.init_command, merged with what sslmode, "
        "statement_timeout, read_only generate"
    )


def test_an_init_command_setting_a_variable_the_keys_set_is_refused_naming_both(project: Any) -> None:
    message = error_of(
        project,
        {**MARIADB, "read_only": True, "options": {"init_command": "SET SESSION tx_read_only = 0"}},
    )
    assert message == (
        'dbconfig.json: databases.default.options.init_command (alias "default"): options.init_command '
        "sets tx_read_only, which the keys set too; the keys generate it: read_only (dbconfig.json: "
        "databases.default.read_only). Remove options.init_command, or the key that generates the "
        "same setting."
    )


def test_an_init_command_keeps_each_assignments_scope_but_session_which_the_set_gives(
    project: Any,
) -> None:
    given = (
        "set SESSION sql_mode = 'A', @@local.time_zone = '+00:00', @@global.max_connections = 10, "
        "@@lc_time_names = es_MX;"
    )
    settings = build(project, {**MARIADB, "statement_timeout": "5s", "options": {"init_command": given}})
    assert settings["OPTIONS"]["init_command"] == (
        "SET SESSION max_statement_time=5, sql_mode = 'A', time_zone = '+00:00', "
        "@@global.max_connections = 10, lc_time_names = es_MX"
    )


def test_an_init_command_setting_several_variables_of_the_keys_names_each(project: Any) -> None:
    given = "SET sql_mode = 'A', tx_read_only = 0, max_statement_time = 0"
    message = error_of(
        project, {**MARIADB, "read_only": True, "statement_timeout": "5s", "options": {"init_command": given}}
    )
    assert "options.init_command sets max_statement_time, tx_read_only, which the keys set too" in message


def test_an_init_command_of_several_assignments_splits_only_on_top_level_commas(project: Any) -> None:
    # Commas inside parentheses and quotes belong to one assignment; MAX_SORT_LENGTH in capitals.
    given = (
        "SET MAX_SORT_LENGTH = 2048, sql_mode = CONCAT(@@sql_mode, LOWER(','), 'STRICT_ALL_TABLES'), "
        "time_zone = '+00:00'"
    )
    settings = build(project, {**MARIADB, "statement_timeout": "5s", "options": {"init_command": given}})
    assert settings["OPTIONS"]["init_command"] == (
        "SET SESSION max_statement_time=5, " + given.removeprefix("SET ")
    )


@pytest.mark.parametrize(
    "command",
    [
        "SET NAMES utf8mb4",
        "SELECT 1",
        "SET sql_mode='A'; SET autocommit=1",
        "SET sql_mode='unterminated",
        "SET sql_mode = CONCAT(@@sql_mode, ',ANSI'",  # a parenthesis left open
    ],
)
def test_an_init_command_that_is_not_one_set_of_assignments_is_refused(project: Any, command: str) -> None:
    message = error_of(project, {**MARIADB, "statement_timeout": "5s", "options": {"init_command": command}})
    assert (
        "options.init_command is not one SET statement of name = value assignments, so it cannot run "
        "in the same statement as the session settings the keys generate"
    ) in message
    # Without generated assignments there is nothing to merge: the command is the user's own.
    assert (
        build(project, {**MARIADB, "options": {"init_command": command}})["OPTIONS"]["init_command"]
        == command
    )


def test_options_ssl_merges_with_the_certificate_keys_part_by_part(project: Any, tmp_path: Path) -> None:
    settings = build(
        project, {**MARIADB, "sslrootcert": "/etc/ssl/ca.pem", "options": {"ssl": {"cipher": "AES256-SHA"}}}
    )
    assert settings["OPTIONS"]["ssl"] == {"ca": "/etc/ssl/ca.pem", "cipher": "AES256-SHA"}
    message = error_of(
        project, {**MARIADB, "sslrootcert": "/etc/ssl/ca.pem", "options": {"ssl": {"ca": "/x"}}}
    )
    assert "options.ssl sets ca differently; the keys generate it: sslrootcert" in message
    message = error_of(
        project,
        {
            **MARIADB,
            "sslrootcert": "/etc/ssl/ca.pem",
            "sslcert": "/etc/ssl/c.pem",
            "sslkey": "/etc/ssl/k.pem",
            "options": {"ssl": {"ca": "/x", "cert": "/y"}},
        },
    )
    assert "options.ssl sets ca, cert differently" in message


def test_an_option_contradicting_a_key_is_an_error_and_an_equal_one_is_not(project: Any) -> None:
    message = error_of(project, {**PG, "sslmode": "verify-full", "options": {"sslmode": "allow"}})
    assert message.startswith(
        'dbconfig.json: databases.default.options.sslmode (alias "default"): options.sslmode gives '
        "another value; the keys generate it: sslmode (dbconfig.json: databases.default.sslmode)."
    )
    same = build(project, {**PG, "sslmode": "require", "options": {"sslmode": "require"}})
    assert same["OPTIONS"]["sslmode"] == "require"


def test_a_built_in_default_gives_way_to_the_option(project: Any) -> None:
    settings = build(project, {**MARIADB, "options": {"connect_timeout": 12}})
    assert settings["OPTIONS"]["connect_timeout"] == 12
    rows = {row.key: row.source for row in project.load().explain("default")}
    assert "connect_timeout" not in rows  # the default that would have said 5 s is not shown
    assert rows["options.connect_timeout"] == "dbconfig.json: databases.default.options.connect_timeout"
    # A connect_timeout someone set is not a default: the two must agree.
    assert "options.connect_timeout gives another value" in error_of(
        project, {**MARIADB, "connect_timeout": "3s", "options": {"connect_timeout": 12}}
    )


def test_options_pool_is_refused_for_the_pool_key(project: Any) -> None:
    message = error_of(project, {**PG, "options": {"pool": True}})
    assert "options.pool is set by the pool key; use that key" in message


# ------------------------------------------------------------------------ PostgreSQL


def test_a_libpq_options_string_adds_its_switches_after_the_generated_ones(project: Any) -> None:
    settings = build(project, {**PG, "statement_timeout": "30s", "options": {"options": "-c work_mem=8MB"}})
    assert settings["OPTIONS"]["options"] == "-c statement_timeout=30000ms -c work_mem=8MB"
    message = error_of(
        project, {**PG, "read_only": True, "options": {"options": "-c default_transaction_read_only=off"}}
    )
    assert "options.options sets default_transaction_read_only, which the keys set too" in message
    message = error_of(project, {**PG, "statement_timeout": "1s", "options": {"options": "-e"}})
    assert (
        "options.options is not only -c name=value switches, so it cannot be combined with the "
        "session settings the keys send in the same startup option"
    ) in message


def test_a_libpq_options_string_naming_several_settings_of_the_keys_names_each(project: Any) -> None:
    options = "-c default_transaction_read_only=off -c statement_timeout=0"
    message = error_of(
        project, {**PG, "read_only": True, "statement_timeout": "1s", "options": {"options": options}}
    )
    assert (
        "options.options sets default_transaction_read_only, statement_timeout, which the keys set too"
        in message
    )


@pytest.mark.parametrize(
    ("keys", "option"),
    [
        ({**PG, "statement_timeout": "1s"}, {"options": ["-c", "work_mem=8MB"]}),  # not a string
        ({**PG, "sslmode": "require"}, {"sslmode": {"mode": "require"}}),  # an object for a string
        ({**MARIADB, "statement_timeout": "1s"}, {"init_command": ["SET autocommit = 1"]}),
    ],
)
def test_an_option_of_another_shape_than_the_generated_one_gives_another_value(
    project: Any, keys: dict[str, Any], option: dict[str, Any]
) -> None:
    name = next(iter(option))
    assert f"options.{name} gives another value" in error_of(project, {**keys, "options": option})


# ------------------------------------------------------------------------ options belong to a backend


def test_an_option_the_backend_does_not_know_is_an_error_with_did_you_mean(project: Any) -> None:
    message = error_of(project, {**PG, "options": {"sslmod": "require", "init_command": "SET x=1"}})
    assert (
        'dbconfig.json: databases.default.options.sslmod (alias "default"): options.sslmod is not an '
        'option of PostgreSQL: its driver would refuse it at connect time. Did you mean "sslmode"?'
    ) in message
    assert (
        "options.init_command is not an option of PostgreSQL (it is an option of MySQL and MariaDB and SQLite)"
        in message
    )


def test_a_third_party_engine_takes_options_of_its_own(project: Any) -> None:
    settings = build(project, {**PG, "engine": "vendor.backends.postgresql", "options": {"vendor_mode": 2}})
    assert settings["OPTIONS"]["vendor_mode"] == 2


def test_options_of_a_backend_another_layer_replaced_are_unused_and_named_by_a_check(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "sqlite",
                    "name": "db.sqlite3",
                    "options": {"init_command": "PRAGMA foreign_keys=ON", "transaction_mode": "IMMEDIATE"},
                }
            },
            "environments": {
                "postgres": {"databases": {"default": {"url": "postgresql://app@db.internal/app"}}}
            },
        }
    )
    databases = build_databases(project.root, environ={}, environment="postgres")
    assert not {"init_command", "transaction_mode"} & set(databases["default"].get("OPTIONS", {}))
    config = project.load(environment="postgres")
    assert [row.key for row in config.unused("default")] == [
        "options.init_command",
        "options.transaction_mode",
    ]
    found = [(alias, p.message) for alias, p in static_problems(databases) if p.id == "dbconfig.W014"]
    assert found == [
        (
            "default",
            '"default" has options.init_command (dbconfig.json: databases.default.options.init_command), '
            "an option of MySQL or MariaDB or SQLite; its backend is PostgreSQL here, so it is ignored.",
        ),
        (
            "default",
            '"default" has options.transaction_mode (dbconfig.json: databases.default.options.transaction_mode), '
            "an option of SQLite; its backend is PostgreSQL here, so it is ignored.",
        ),
    ]


def test_a_driver_error_for_an_option_names_the_option() -> None:
    assert refused_option('OperationalError: invalid connection option "init_command"') == "init_command"
    assert refused_option("TypeError: 'transaction_mode' is an invalid keyword argument for connect()") == (
        "transaction_mode"
    )
    assert refused_option("OperationalError: password authentication failed") is None


# ------------------------------------------------------------------------ ${VAR} references


def test_a_file_value_may_refer_to_the_projects_own_variables(project: Any) -> None:
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "postgresql",
                    "host": "${DB_HOST}",
                    "port": "${DB_PORT:-5433}",
                    "name": "${DB_NAME:-app}",
                    "user": "${DB_USER}",
                    "password": "${DB_PASSWORD}",
                    "search_path": "${DB_SCHEMAS}",
                }
            }
        }
    )
    environ = {"DB_HOST": "pg.internal", "DB_USER": "web", "DB_PASSWORD": SECRET, "DB_SCHEMAS": "app,public"}
    config = project.load(environ)
    settings = config.databases()["default"]
    assert (settings["HOST"], settings["PORT"], settings["NAME"], settings["USER"]) == (
        "pg.internal",
        5433,
        "app",
        "web",
    )
    assert settings["PASSWORD"] == SECRET
    rows = {row.key: (row.value, row.source) for row in config.explain("default")}
    assert rows["host"] == ("pg.internal", "DB_HOST (referenced in dbconfig.json: databases.default.host)")
    assert rows["port"] == (
        "5433",
        "the default of ${DB_PORT} (referenced in dbconfig.json: databases.default.port)",
    )
    assert rows["password"] == (
        "********",
        "DB_PASSWORD (referenced in dbconfig.json: databases.default.password)",
    )
    assert rows["search_path"][0] == "app, public"
    assert SECRET not in repr(config) + str(config.explain("default"))


def test_a_missing_variable_without_a_default_is_an_error_naming_it(project: Any) -> None:
    project.write_config({"databases": {"default": {**PG, "password": "${DB_PASSWORD}"}}})
    with pytest.raises(DbConfigError) as caught:
        project.load({})
    assert str(caught.value) == (
        "dbconfig.json: databases.default.password: refers to ${DB_PASSWORD}, but the variable "
        "DB_PASSWORD is not set. Set DB_PASSWORD, or give a default: ${DB_PASSWORD:-value}."
    )


def test_references_work_in_profiles_and_the_secrets_file_and_can_be_escaped(project: Any) -> None:
    project.write_config(
        {
            "databases": {"default": {**PG, "application_name": "cost $${5}"}},
            "environments": {"production": {"databases": {"default": {"host": "${PROD_HOST}"}}}},
        }
    )
    project.write_secrets({"databases": {"default": {"password": "${PROD_PASSWORD}"}}})
    config = project.load({"PROD_HOST": "prod.internal", "PROD_PASSWORD": SECRET}, environment="production")
    settings = config.databases()["default"]
    assert (settings["HOST"], settings["PASSWORD"]) == ("prod.internal", SECRET)
    assert settings["OPTIONS"]["application_name"] == "cost ${5}"


# ------------------------------------------------------------------------ check --deploy


def test_the_built_in_sqlite_default_is_a_deploy_warning_with_debug_off(project: Any) -> None:
    databases = build_databases(project.root, environ={})
    assert deploy_problems(databases, debug=True) == []
    [found] = deploy_problems(databases, debug=False)
    assert found.id == "dbconfig.W013"
    assert "Looked for: DATABASE_URL, DBCONFIG_DEFAULT_URL" in found.message
    project.write_config({"databases": {"default": {"backend": "sqlite", "name": "app.db"}}})
    assert deploy_problems(build_databases(project.root, environ={}), debug=False) == []


# ------------------------------------------------------------------------ real servers


def issue_scenario(server: MariaDBServer) -> dict[str, Any]:
    """TLS, read-only and a timeout asked for, and the init_command Django's docs recommend."""
    return {
        "backend": "mariadb",
        "host": server.host,
        "port": server.port,
        "name": server.dbname,
        "user": server.user,
        "password": server.password,
        "sslmode": "require",
        "read_only": True,
        "statement_timeout": "5s",
        "options": {"init_command": "SET sql_mode='STRICT_TRANS_TABLES'"},
    }


@pytest.mark.mariadb
@pytest.mark.slow
def test_a_user_init_command_no_longer_drops_tls_on_a_plain_server(
    project: Any, mariadb_plain_server: MariaDBServer
) -> None:
    """Before: the user's init_command replaced the TLS guard, and this INSERT went over plain text."""
    server = mariadb_plain_server
    settings = build(
        project,
        issue_scenario(server),
    )
    settings["OPTIONS"]["ssl_mode"] = "PREFERRED"  # the driver may fall back: the guard must not
    with pytest.raises(Exception, match="DBCONFIG_TLS_REQUIRED_BUT_SESSION_NOT_ENCRYPTED"):
        with django_connection(settings):
            pass


@pytest.mark.mariadb
@pytest.mark.slow
def test_a_user_init_command_keeps_tls_read_only_and_the_timeout_on_the_server(
    project: Any, mariadb_tls_server: MariaDBServer
) -> None:
    server = mariadb_tls_server
    settings = build(
        project,
        issue_scenario(server),
    )
    with django_connection(settings) as connection:
        assert query_one(connection, "SELECT @@session.sql_mode") == "STRICT_TRANS_TABLES"
        assert float(query_one(connection, "SELECT @@session.max_statement_time")) == 5.0
        assert int(query_one(connection, "SELECT @@session.tx_read_only")) == 1
        with connection.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cursor.fetchone()[1]  # a cipher: the session is encrypted
            with pytest.raises(Exception, match="READ ONLY transaction"):
                cursor.execute(f"CREATE TABLE ro_{uuid.uuid4().hex[:8]} (x int)")


@pytest.mark.postgresql
def test_a_libpq_options_string_and_the_keys_both_reach_the_server(
    project: Any, shared_postgres: dict[str, Any]
) -> None:
    settings = build(
        project,
        {
            "backend": "postgresql",
            "host": shared_postgres["host"],
            "port": shared_postgres["port"],
            "name": shared_postgres["dbname"],
            "user": shared_postgres["user"],
            "statement_timeout": "1500ms",
            "read_only": True,
            "options": {"options": "-c work_mem=8MB"},
        },
    )
    with django_connection(settings) as connection:
        assert query_one(connection, "SHOW work_mem") == "8MB"
        assert query_one(connection, "SHOW statement_timeout") == "1500ms"
        assert query_one(connection, "SHOW default_transaction_read_only") == "on"


@pytest.mark.postgresql
@pytest.mark.mariadb
def test_a_sqlite_base_with_options_serves_postgresql_and_mariadb_profiles(
    project: Any, shared_postgres: dict[str, Any], shared_mariadb: dict[str, Any]
) -> None:
    """Before: PostgreSQL failed with invalid connection option "init_command", MariaDB with a TypeError."""
    project.write_config(
        {
            "databases": {
                "default": {
                    "backend": "sqlite",
                    "name": "hc.sqlite",
                    "options": {"init_command": "PRAGMA journal_mode=wal", "transaction_mode": "IMMEDIATE"},
                }
            },
            "environments": {
                "postgres": {
                    "databases": {
                        "default": {
                            "url": "postgresql://{user}@{host}:{port}/{dbname}".format(**shared_postgres)
                        }
                    }
                },
                "mariadb": {
                    "databases": {
                        "default": {
                            "url": "mariadb://{user}@{host}:{port}/{database}".format(**shared_mariadb)
                        }
                    }
                },
            },
        }
    )
    for profile, sql, vendor in (("postgres", "SELECT 1", "postgresql"), ("mariadb", "SELECT 1", "mysql")):
        config = project.load(environment=profile)
        assert {row.key for row in config.unused("default")} == {
            "options.init_command",
            "options.transaction_mode",
        }
        with django_connection(config.databases()["default"]) as connection:
            assert connection.vendor == vendor
            assert query_one(connection, sql) == 1


@pytest.mark.postgresql
def test_dbcheck_names_an_option_the_driver_refused(project: Any, shared_postgres: dict[str, Any]) -> None:
    config_alias = {
        "backend": "postgresql",
        "host": shared_postgres["host"],
        "port": shared_postgres["port"],
        "name": shared_postgres["dbname"],
        "user": shared_postgres["user"],
    }
    project.write_config({"databases": {"default": config_alias}})
    databases = build_databases(project.root, environ={})
    databases["default"].setdefault("OPTIONS", {})["init_command"] = "SET x=1"  # an edit in settings.py
    status, result = dbcheck_json(databases)
    [db] = result["databases"]
    assert status == 1
    [problem] = db["problems"]
    assert problem["id"] == "dbconfig.E117"
    assert problem["message"].startswith("The driver refused options.init_command: ")
    assert "host, port, user or password" in problem["hint"]
