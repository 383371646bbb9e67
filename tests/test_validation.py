"""Every bad input raises DbConfigError naming the source, the alias and the fix, and never a secret."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import django
import pytest

from django_dbconfig import DbConfigError, build_databases, load_config, override
from django_dbconfig.conf.sources import DefaultsSource, EnvironSource
from django_dbconfig.core.keys import KEYS
from tests.helpers import needs_django_pool

VALID_KEYS = ", ".join(KEYS)

PG = {"backend": "postgresql", "name": "app"}
SECRET = "hunter2-secret"

CASES = [
    pytest.param(
        '{"databases": {',
        None,
        {},
        "dbconfig.json: not valid JSON (Expecting property name enclosed in double quotes at line 1, column 16). Fix the syntax.",
        id="malformed_json",
    ),
    pytest.param(
        "[1,2]", None, {}, "dbconfig.json: the file must hold a JSON object at the top.", id="top_not_object"
    ),
    pytest.param(
        {"databases": []},
        None,
        {},
        "dbconfig.json: databases: expected an object (alias: settings), got list.",
        id="databases_not_object",
    ),
    pytest.param(
        {"databases": {"default": "postgres://x"}},
        None,
        {},
        "dbconfig.json: databases.default: expected an object (key: value settings), got str.",
        id="alias_not_object",
    ),
    pytest.param(
        {"database": {}},
        None,
        {},
        'dbconfig.json: unknown top-level key "database". Expected "defaults", "databases", "routes" or "environments". Did you mean "databases"?',
        id="unknown_top",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "hostname": "x"}}},
        None,
        {},
        f'dbconfig.json: databases.default.hostname: unknown key "hostname". Valid keys: {VALID_KEYS}. Did you mean "name"?',
        id="unknown_key",
    ),
    pytest.param(
        {"databases": {"Read-Replica": {"backend": "postgresql", "name": "app"}}},
        None,
        {},
        'dbconfig.json: databases.Read-Replica: alias "Read-Replica" is not a valid alias name. Use lowercase letters, digits and underscores, starting with a letter (e.g. "analytics", "read_replica"), so that it maps to environment variables.',
        id="bad_alias",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "conn_health_checks": "yes"}}},
        None,
        {},
        'dbconfig.json: databases.default.conn_health_checks (alias "default"): conn_health_checks: expected true or false, got a string.',
        id="wrong_type",
    ),
    pytest.param(
        {
            "databases": {
                "default": {"backend": "postgresql", "name": "app", "statement_timeout": "30 seconds"}
            }
        },
        None,
        {},
        'dbconfig.json: databases.default.statement_timeout (alias "default"): statement_timeout: expected a duration such as 30, "500ms", "30s", "5min" or "1h", got \'30 seconds\'.',
        id="bad_duration",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "conn_max_age": -1}}},
        None,
        {},
        'dbconfig.json: databases.default.conn_max_age (alias "default"): conn_max_age: expected seconds from 0 to 86400, or null for no limit, got -1.',
        id="negative",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "statement_timeout": 86400000}}},
        None,
        {},
        'dbconfig.json: databases.default.statement_timeout (alias "default"): statement_timeout: 86400000 is longer than a day; check the unit (ms, s, min, h).',
        id="absurd",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgress", "name": "x"}}},
        None,
        {},
        'dbconfig.json: databases.default.backend (alias "default"): backend: "postgress" is not one of "postgresql", "mysql", "mariadb" or "sqlite". Did you mean "postgresql"?',
        id="unknown_backend",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "sslmode": "verify_full"}}},
        None,
        {},
        'dbconfig.json: databases.default.sslmode (alias "default"): sslmode: "verify_full" is not one of "disable", "allow", "prefer", "require", "verify-ca" or "verify-full". Did you mean "verify-full"?',
        id="unknown_sslmode",
    ),
    pytest.param(
        {
            "databases": {
                "default": {"backend": "postgresql", "name": "app"},
                "r": {"backend": "postgresql", "name": "app", "replica_of": "primary"},
            }
        },
        None,
        {},
        'dbconfig.json: databases.r.replica_of (alias "r"): replica_of names "primary", which is not an alias. Known aliases: "default" or "r".',
        id="replica_unknown",
    ),
    pytest.param(
        {
            "databases": {"default": {"backend": "postgresql", "name": "app"}},
            "routes": {"reports": "analytcs"},
        },
        None,
        {},
        'dbconfig.json: routes.reports: route "reports" goes to "analytcs", which is not an alias. Known aliases: "default".',
        id="route_unknown",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app"}}, "routes": {"a.b.c": "default"}},
        None,
        {},
        'dbconfig.json: routes.a.b.c: "a.b.c" is not a route key. Use an app label ("reports") or app_label.ModelName ("events.PageView").',
        id="route_bad_key",
    ),
    pytest.param(
        None,
        None,
        {"DBCONFIG_DEFAULT_PASSWORD_FILE": "/run/secrets/nope"},
        "DBCONFIG_DEFAULT_PASSWORD_FILE: the file /run/secrets/nope does not exist. Point DBCONFIG_DEFAULT_PASSWORD_FILE at the file holding the value (e.g. a mounted Docker or Kubernetes secret).",
        id="file_missing",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "port": 70000}}},
        None,
        {},
        'dbconfig.json: databases.default.port (alias "default"): port: expected a port from 1 to 65535, got 70000.',
        id="port_range",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "postgresql://u@h/app", "DBCONFIG_DEFAULT_PORT": "54x"},
        'DBCONFIG_DEFAULT_PORT (alias "default"): port: expected a whole number, got "54x".',
        id="port_env",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "host": "h"}}},
        None,
        {},
        'dbconfig.json: databases.default.backend (alias "default"): a PostgreSQL alias needs a database name. Set databases.default.name, DBCONFIG_DEFAULT_NAME, or put it in the URL path.',
        id="missing_name",
    ),
    pytest.param(
        None,
        None,
        {"DBCONFIG_DEFAULT_HOTS": "x"},
        f'DBCONFIG_DEFAULT_HOTS: not a django-dbconfig variable. Use DBCONFIG_<ALIAS>_<KEY> with a key from: {VALID_KEYS}; or one of DBCONFIG_ENV, DBCONFIG_FILE, DBCONFIG_SECRETS_DIR. Did you mean "DBCONFIG_DEFAULT_HOST"?',
        id="unknown_var",
    ),
    pytest.param(
        {
            "databases": {"default": {"backend": "postgresql", "name": "app"}},
            "environments": {"production": {}, "development": {}},
        },
        None,
        {"DBCONFIG_ENV": "prod"},
        'DBCONFIG_ENV: unknown environment "prod". Known environments: "development" or "production". Add environments.prod to dbconfig.json, or fix DBCONFIG_ENV.',
        id="unknown_env",
    ),
    pytest.param(
        None,
        None,
        {"DBCONFIG_FILE": "nope.json"},
        "nope.json (from DBCONFIG_FILE): the configuration file does not exist. Create it, or fix DBCONFIG_FILE / config_file=.",
        id="explicit_missing",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "mysql", "name": "app", "search_path": ["a"]}}},
        None,
        {},
        'dbconfig.json: databases.default.search_path (alias "default"): search_path is not supported on MySQL. MySQL and MariaDB have no schema search path: a database is a schema. Set name instead. The backend "mysql" comes from dbconfig.json: databases.default.backend.',
        id="search_path_mysql",
    ),
    pytest.param(
        {"databases": {"default": {"sslmode": "require"}}},
        None,
        {},
        'dbconfig.json: databases.default.sslmode (alias "default"): sslmode is not supported on SQLite. SQLite is a local file: there is no server, network, TLS or user. The backend "sqlite" is the built-in default here: set "backend" or "url".',
        id="sslmode_sqlite",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "mariadb", "name": "app", "pool": True}}},
        None,
        {},
        'dbconfig.json: databases.default.pool (alias "default"): pool is not supported on MariaDB. Django\'s connection pool exists for PostgreSQL only; use conn_max_age. The backend "mariadb" comes from dbconfig.json: databases.default.backend.',
        id="pool_mysql",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "postgresql://u:hunter2-secret@h:99999/app"},
        'DATABASE_URL (alias "default"): the URL is malformed. Check the form scheme://user:password@host:port/name and percent-encode special characters in the user name and password.',
        id="url_bad_port_pw",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "oracle://u:hunter2-secret@h/app"},
        'DATABASE_URL (alias "default"): the URL scheme "oracle" names a backend django-dbconfig does not configure. Use postgresql://, postgres://, postgis://, mysql://, mariadb://, sqlite:// or spatialite://.',
        id="url_scheme",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "foo://u:hunter2-secret@h/app"},
        'DATABASE_URL (alias "default"): the URL scheme "foo" is not supported. Use postgresql://, postgres://, postgis://, mysql://, mariadb://, sqlite:// or spatialite://.',
        id="url_unknown_scheme",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "password": 12345678}}},
        None,
        {},
        'dbconfig.json: databases.default.password (alias "default"): password: expected a string, got a number (the value is not shown: password is secret).',
        id="pw_wrong_type",
    ),
    pytest.param(
        None,
        '{"databases": {"default": {"password": "hunter2-secret"',
        {},
        ".secrets/dbconfig.json: not valid JSON (Expecting ',' delimiter at line 1, column 56). Fix the syntax.",
        id="secrets_bad_json",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "postgresql://u@h/a", "DBCONFIG_DEFAULT_URL": "postgresql://u@h/b"},
        'DATABASE_URL and DBCONFIG_DEFAULT_URL both set the URL of alias "default". Keep one of them.',
        id="both_url",
    ),
    pytest.param(
        None,
        None,
        {"DBCONFIG_DEFAULT_HOST": "a", "DBCONFIG_DEFAULT_HOST_FILE": "/x"},
        "DBCONFIG_DEFAULT_HOST and DBCONFIG_DEFAULT_HOST_FILE are both set. Set the value or the file, not both.",
        id="both_file",
    ),
    pytest.param(
        {"defaults": {"url": "postgresql://u@h/a"}},
        None,
        {},
        "dbconfig.json: defaults.url: url cannot be a default for every alias. Move it under databases.<alias>.url.",
        id="url_in_defaults",
    ),
    pytest.param(
        None,
        None,
        {"DBCONFIG_ANALYTISC_HOST": "x"},
        'Alias "analytisc" has no backend: set "backend" or "url" for it (e.g. DBCONFIG_ANALYTISC_URL or databases.analytisc.url). Its settings come from: DBCONFIG_ANALYTISC_HOST.',
        id="no_backend",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "postgresql", "name": "app", "replica_of": "default"}}},
        None,
        {},
        'dbconfig.json: databases.default.replica_of (alias "default"): an alias cannot be a replica of itself.',
        id="replica_self",
    ),
    pytest.param(
        {
            "databases": {
                "default": {"backend": "postgresql", "name": "app"},
                "r": {"backend": "postgresql", "name": "app", "replica_of": "default"},
            },
            "routes": {"a": "r"},
        },
        None,
        {},
        'dbconfig.json: routes.a: route "a" goes to the replica "r". Route to its primary: reads are sent to replicas automatically.',
        id="route_replica",
    ),
    pytest.param(
        None,
        None,
        {"DBCONFIG_ANALYTISC_HOST": "x", "DBCONFIG_ANALYTISC_NAME": "a"},
        'Alias "analytisc" has no backend: set "backend" or "url" for it (e.g. DBCONFIG_ANALYTISC_URL or databases.analytisc.url). Its settings come from: DBCONFIG_ANALYTISC_HOST, DBCONFIG_ANALYTISC_NAME.',
        id="no_backend_two_sources",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "mysql", "name": "app", "host": "db", "port": [3306, 3307]}}},
        None,
        {},
        'dbconfig.json: databases.default.port (alias "default"): port lists several ports, but several hosts (libpq\'s failover) exist for PostgreSQL only: give MySQL/MariaDB one host, and put a proxy or a virtual IP in front of several servers.',
        id="mysql_port_list",
    ),
    pytest.param(
        {"databases": {"default": PG}, "routes": {"reports": "Bad-Alias"}},
        None,
        {},
        'dbconfig.json: routes.reports: alias "Bad-Alias" is not a valid alias name. Use lowercase letters, digits and underscores, starting with a letter (e.g. "analytics", "read_replica"), so that it maps to environment variables.',
        id="route_bad_alias",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "sqlite:////tmp/app.db?sslmode=require"},
        'DATABASE_URL (alias "default"): sslmode is not supported on SQLite. SQLite is a local file: there is no server, network, TLS or user. The backend "sqlite" comes from DATABASE_URL.',
        id="url_query_key_its_backend_refuses",
    ),
    pytest.param(
        {
            "databases": {
                "default": {"backend": "mysql", "name": "app", "host": "p"},
                "r": {"replica_of": "default", "host": "r", "target_session_attrs": "read-write"},
            }
        },
        None,
        {},
        # The backend the replica inherits comes from the same layer as its own key: refused, not ignored.
        'dbconfig.json: databases.r.target_session_attrs (alias "r"): target_session_attrs is not supported on MySQL. Several hosts (libpq\'s failover) exist for PostgreSQL only: give MySQL/MariaDB one host, and put a proxy or a virtual IP in front of several servers. The backend "mysql" comes from inherited from default: dbconfig.json: databases.default.backend.',
        id="replica_key_its_inherited_backend_refuses",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "postgresql://u:p/ss@h/app"},
        'DATABASE_URL (alias "default"): the URL has an @ after the host part, so the user name or password holds a / ? or # that is not percent-encoded. Encode them (%2F, %3F, %23).',
        id="url_password_with_an_unencoded_slash",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "postgres:/db/app"},
        'DATABASE_URL (alias "default"): the URL does not start with scheme:// (e.g. postgresql://). Check the form scheme://user:password@host:port/name.',
        id="url_without_scheme_slashes",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "redis+hiredis://h/0"},
        'DATABASE_URL (alias "default"): the URL scheme "redis+hiredis" names a driver django-dbconfig does not know. Known driver suffixes: postgresql+ psycopg, psycopg2, psycopg2cffi, asyncpg, pg8000; postgres+ psycopg, psycopg2, psycopg2cffi, asyncpg, pg8000; postgis+ psycopg, psycopg2, asyncpg; mysql+ mysqldb, pymysql, mysqlconnector, aiomysql, asyncmy, mariadbconnector, cymysql; mariadb+ mariadbconnector, mysqldb, pymysql, mysqlconnector, aiomysql, asyncmy; sqlite+ pysqlite, aiosqlite, pysqlcipher; spatialite+ pysqlite; or no suffix (postgresql://, postgres://, postgis://, mysql://, mariadb://, sqlite:// or spatialite://).',
        id="url_unknown_scheme_with_a_driver",
    ),
    pytest.param(
        {"databases": {"default": PG}, "environments": {"prod": {"environments": {}}}},
        None,
        {"DBCONFIG_ENV": "prod"},
        "dbconfig.json: environments.prod.environments: environments are not allowed here. Put profiles in dbconfig.json.",
        id="profile_with_environments",
    ),
    pytest.param(
        '{"databases": ',
        None,
        {"DBCONFIG_ENV": "prod"},
        "dbconfig.json: not valid JSON (Expecting value at line 1, column 15). Fix the syntax.",
        id="malformed_json_with_a_profile_asked",
    ),
    pytest.param(
        {"databases": {"default": PG}, "environments": {"prod": [PG]}},
        None,
        {"DBCONFIG_ENV": "prod"},
        "dbconfig.json: environments.prod: expected an object shaped like dbconfig.json.",
        id="profile_not_object",
    ),
    pytest.param(
        {"databases": {"default": PG}, "environments": {"prod": {"databases": {"default": {"port": "x"}}}}},
        None,
        {"DBCONFIG_ENV": "prod"},
        'dbconfig.json: environments.prod.databases.default.port (alias "default"): port: expected a whole number, got a string.',
        id="profile_bad_value",
    ),
    pytest.param(
        None,
        {
            "databases": {"default": {"backend": "sqlite", "name": "app.db"}},
            "environments": {"prod": {"databases": {"default": {"sslmode": "require"}}}},
        },
        {"DBCONFIG_ENV": "prod"},
        # The secrets file and its profile are one layer: the key is refused, not ignored.
        '.secrets/dbconfig.json: environments.prod.databases.default.sslmode (alias "default"): sslmode is not supported on SQLite. SQLite is a local file: there is no server, network, TLS or user. The backend "sqlite" comes from .secrets/dbconfig.json: databases.default.backend.',
        id="secrets_profile_key_its_backend_refuses",
    ),
    pytest.param(
        None,
        None,
        {"DBCONFIG_DEFAULT_PASSWORD_FILE": "/tmp/" + "x" * 300},
        f"DBCONFIG_DEFAULT_PASSWORD_FILE: the file /tmp/{'x' * 300} cannot be read (OSError). Check that the path is a readable file.",
        id="file_twin_name_too_long",
    ),
    pytest.param(
        {"databases": {"default": {**PG, "pooler": "transaction", "disable_server_side_cursors": False}}},
        None,
        {},
        'dbconfig.json: databases.default.disable_server_side_cursors (alias "default"): '
        'disable_server_side_cursors is false, but pooler "transaction" (dbconfig.json: '
        "databases.default.pooler) cannot keep a named cursor across transactions. Remove "
        "disable_server_side_cursors (it is true behind a transaction pooler).",
        id="named_cursors_behind_a_transaction_pooler",
    ),
    pytest.param(
        {
            "databases": {
                "default": PG,
                "r1": {"replica_of": "default", "host": "r1"},
                "r2": {"replica_of": "r1", "host": "r2"},
            }
        },
        None,
        {},
        'dbconfig.json: databases.r2.replica_of (alias "r2"): "r1" is itself a replica. Point replica_of '
        "at the primary.",
        id="replica_of_a_replica",
    ),
    pytest.param(
        {"databases": {"default": {"engine": "postgis", "name": "app", "wsrep_sync_wait": 1}}},
        None,
        {},
        'dbconfig.json: databases.default.wsrep_sync_wait (alias "default"): wsrep_sync_wait is not '
        "supported on PostgreSQL. It asks a MariaDB/MySQL Galera node for causal reads. On PostgreSQL, "
        "reads that must see every committed write go to the primary (or the standbys run "
        'synchronous_commit = remote_apply); remove it for this alias. The backend "postgresql" comes '
        "from dbconfig.json: databases.default.engine.",
        id="key_another_family_uses_with_the_backend_an_engine_implies",
    ),
    pytest.param(
        {"databases": {"default": {"engine": "postgis", "name": "app", "options": {"foo": 1}}}},
        None,
        {},
        'dbconfig.json: databases.default.options.foo (alias "default"): options.foo is not an option of '
        "PostgreSQL: its driver would refuse it at connect time. Remove it for this alias, or set engine "
        'if a third-party engine reads it. The backend "postgresql" comes from dbconfig.json: '
        "databases.default.engine.",
        id="unknown_option_with_a_short_engine_name_of_this_project",
    ),
    pytest.param(
        {"databases": {"default": {"name": "app", "options": {"foo": 1}}}},
        None,
        {},
        'dbconfig.json: databases.default.options.foo (alias "default"): options.foo is not an option of '
        "SQLite: its driver would refuse it at connect time. Remove it for this alias, or set engine if a "
        'third-party engine reads it. The backend "sqlite" is the built-in default here: set "backend" '
        'or "url".',
        id="unknown_option_with_the_default_backend",
    ),
    pytest.param(
        {"databases": {"default": {"backend": "sqlite", "name": "app", "search_path": ["a"]}}},
        None,
        {},
        'dbconfig.json: databases.default.search_path (alias "default"): search_path is not supported on '
        'SQLite. Remove it for this alias. The backend "sqlite" comes from dbconfig.json: '
        "databases.default.backend.",
        id="key_a_backend_has_no_use_for_without_a_reason",
    ),
    pytest.param(
        {"databases": {"default": {**PG, "sslmode": "require", "options": {"sslmode": "disable"}}}},
        None,
        {},
        'dbconfig.json: databases.default.options.sslmode (alias "default"): options.sslmode gives another '
        "value; the keys generate it: sslmode (dbconfig.json: databases.default.sslmode). Remove "
        "options.sslmode, or the key that generates the same setting.",
        id="option_the_keys_generate_otherwise",
    ),
    pytest.param(
        {"databases": {"default": {**PG, "host": "db", "port": [5432, 5433]}}},
        None,
        {},
        'dbconfig.json: databases.default.port (alias "default"): port lists 2 ports for 1 host. Give one '
        "port for every host, or one port for all of them.",
        id="ports_for_one_host",
    ),
    pytest.param(
        {"databases": {"default": {**PG, "host": ["a", "b"], "port": [5432, 5433, 5434]}}},
        None,
        {},
        'dbconfig.json: databases.default.port (alias "default"): port lists 3 ports for 2 hosts. Give '
        "one port for every host, or one port for all of them.",
        id="more_ports_than_hosts",
    ),
    pytest.param(
        {"defaults": None},
        None,
        {},
        "dbconfig.json: defaults: expected an object (key: value settings for every alias), got null.",
        id="defaults_null",
    ),
    pytest.param(
        {"defaults": ["sqlite"]},
        None,
        {},
        "dbconfig.json: defaults: expected an object (key: value settings for every alias), got list.",
        id="defaults_not_object",
    ),
    pytest.param(
        {"defaults": {"port": "x"}},
        None,
        {},
        "dbconfig.json: defaults.port: port: expected a whole number, got a string.",
        id="bad_default_names_no_alias",
    ),
    pytest.param(
        {"databases": {"default": PG}, "environments": {"SANDBOX": {"databasez": {}}}},
        None,
        {"DBCONFIG_ENV": "SANDBOX"},
        'dbconfig.json: environments.SANDBOX: unknown top-level key "databasez". Expected "defaults", '
        '"databases", "routes" or "environments". Did you mean "databases"?',
        id="profile_unknown_top_level_key",
    ),
    pytest.param(
        {"databases": {"default": {**PG, "pool": True, "options": {"pool": {"min_size": 2}}}}},
        None,
        {},
        'dbconfig.json: databases.default.options.pool (alias "default"): options.pool is set by the pool '
        "key; use that key. Remove options.pool, or the key that generates the same setting.",
        id="option_a_key_sets_that_no_key_generates_as_an_option",
        marks=needs_django_pool,
    ),
    pytest.param(
        {
            "databases": {
                "default": {
                    "backend": "mariadb",
                    "name": "app",
                    "host": "db",
                    "read_only": True,
                    "statement_timeout": "5s",
                    "options": {"init_command": "SET tx_read_only = 0, max_statement_time = 0"},
                }
            }
        },
        None,
        {},
        'dbconfig.json: databases.default.options.init_command (alias "default"): options.init_command '
        "sets max_statement_time, tx_read_only, which the keys set too; the keys generate it: "
        "statement_timeout (dbconfig.json: databases.default.statement_timeout), read_only "
        "(dbconfig.json: databases.default.read_only). Remove options.init_command, or the key that "
        "generates the same setting.",
        id="option_two_keys_generate",
    ),
    pytest.param(
        {"databases": {"default": PG}, "routes": ["analytics"]},
        None,
        {},
        "dbconfig.json: routes: expected an object (app_label or app_label.Model: alias), got list.",
        id="routes_not_object",
    ),
    pytest.param(
        {"databases": {"default": PG}, "environments": ["prod"]},
        None,
        {},
        "dbconfig.json: environments: expected an object (profile name: settings), got list.",
        id="environments_not_object",
    ),
    pytest.param(
        None,
        None,
        {
            "DBCONFIG_DEFAULT_BACKEND": "sqlite",
            "DBCONFIG_DEFAULT_NAME": "x",
            "DBCONFIG_DEFAULT_SEARCH_PATH": "a",
        },
        'DBCONFIG_DEFAULT_SEARCH_PATH (alias "default"): search_path is not supported on SQLite. Remove it '
        'for this alias. The backend "sqlite" comes from DBCONFIG_DEFAULT_BACKEND.',
        id="variable_key_the_backend_of_the_variables_has_no_use_for",
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "postgresql://h/app", "DBCONFIG_DEFAULT_MIGRATE_PORT": "x"},
        'DBCONFIG_DEFAULT_MIGRATE_PORT (alias "default"): migrate: port: expected a whole number, got "x".',
        id="bad_migrate_variable",
    ),
]


@pytest.mark.parametrize(("document", "secrets", "environ", "message"), CASES)
def test_bad_input_names_source_alias_and_fix(
    project: Any, document: Any, secrets: str | None, environ: dict[str, str], message: str
) -> None:
    if document is not None:
        project.write_config(document)
    if secrets is not None:
        project.write_secrets(secrets)
    with pytest.raises(DbConfigError) as info:
        project.load(environ)
    assert str(info.value).replace(str(project.root), "<base>") == message
    assert SECRET not in str(info.value)


# A password, arriving through every layer, next to a mistake in the same alias.
LEAKS = [
    pytest.param(
        {"databases": {"default": {**PG, "password": SECRET, "port": "x"}}}, None, {}, None, id="file"
    ),
    pytest.param(
        {"databases": {"default": {**PG, "port": 0}}},
        {"databases.default.password": SECRET},
        {},
        None,
        id="secrets",
    ),
    pytest.param(
        {"databases": {"default": PG}},
        None,
        {"DBCONFIG_DEFAULT_PASSWORD": SECRET, "DBCONFIG_DEFAULT_SSLMODE": "on"},
        None,
        id="variable",
    ),
    pytest.param(
        None, None, {"DATABASE_URL": f"postgresql://u:{SECRET}@h:notaport/app"}, None, id="url-port"
    ),
    pytest.param(None, None, {"DATABASE_URL": f"postgresql://u:{SECRET}@[::1/app"}, None, id="url-bracket"),
    pytest.param(
        None, None, {"DATABASE_URL": f"mysql://u:{SECRET}@h/app?search_path=x"}, None, id="url-mysql"
    ),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": f"postgresql://u:{SECRET}@h/app?statement_timeout=forever"},
        None,
        id="url-option",
    ),
    pytest.param(None, None, {"DATABASE_URL": f"{SECRET}"}, None, id="url-no-scheme"),
    pytest.param(None, None, {"DBCONFIG_DEFAULT_URL": f"mongodb://u:{SECRET}@h/app"}, None, id="url-scheme"),
    pytest.param(
        None,
        None,
        {"DATABASE_URL": "sqlite:///x.db", "DBCONFIG_DEFAULT_PASSWORD": SECRET},
        None,
        id="sqlite-password",
    ),
    pytest.param(
        None, None, {}, {"databases": {"default": {**PG, "password": [SECRET]}}}, id="override-type"
    ),
    pytest.param(
        None, None, {"DBCONFIG_DEFAULT_OPTIONS": f'{{"password": "{SECRET}"'}, None, id="options-json"
    ),
]


@pytest.mark.parametrize(("document", "secrets", "environ", "overrides"), LEAKS)
def test_no_secret_in_any_error(
    project: Any, document: Any, secrets: Any, environ: dict[str, str], overrides: Any
) -> None:
    if document is not None:
        project.write_config(document)
    if secrets is not None:
        project.write_secrets(secrets)
    with pytest.raises(DbConfigError) as info:
        project.load(environ, overrides=overrides)
    text = str(info.value)
    assert SECRET not in text
    assert info.value.__cause__ is None or SECRET not in str(info.value.__cause__)
    assert SECRET not in repr(info.value)


def test_secret_from_file_twin_never_appears(project: Any) -> None:
    path = project.write_file("secret", f"{SECRET}\n")
    with pytest.raises(DbConfigError) as info:
        project.load({"DBCONFIG_DEFAULT_PASSWORD_FILE": str(path), "DBCONFIG_DEFAULT_PORT": "0"})
    assert SECRET not in str(info.value)


WEIRD_DOCUMENTS = [
    "",
    "null",
    "1",
    '"text"',
    "[]",
    '{"databases": null}',
    '{"databases": {"default": []}}',
    '{"databases": {"default": {"options": []}}}',
    '{"databases": {"default": {"test": "x"}}}',
    '{"databases": {"default": {"search_path": []}}}',
    '{"databases": {"default": {"search_path": [1]}}}',
    '{"databases": {"default": {"search_path": "app"}}}',
    '{"routes": []}',
    '{"routes": {"a": 1}}',
    '{"environments": []}',
    '{"defaults": []}',
    '{"databases": {"1x": {}}}',
    '{"databases": {"": {}}}',
    '{"databases": {"default": {"port": true}}}',
    '{"databases": {"default": {"conn_max_age": 1.5}}}',
    '{"databases": {"default": {"statement_timeout": -1}}}',
    '{"databases": {"default": {"statement_timeout": NaN}}}',
    '{"databases": {"default": {"statement_timeout": Infinity}}}',
    '{"databases": {"default": {"engine": "x"}}}',
    '{"databases": {"default": {"backend": null}}}',
    '{"databases": {"default": {"url": ""}}}',
    '{"databases": {"default": {"url": "postgresql://"}}}',
    '{"databases": {"default": {"url": 5}}}',
    '{"databases.default.host.x": 1}',
    '{"databases": {"default": {"host": {"a": 1}}}}',
    '{"databases": {"default": {"search_path": ["a\\u0000b"]}}}',
    "\ud800",
    '{"a": 1, "a": {"b"}}',
]


@pytest.mark.parametrize("text", WEIRD_DOCUMENTS)
def test_nothing_but_dbconfig_error_escapes(project: Any, text: str) -> None:
    path = project.root / "dbconfig.json"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        project.load()
    except DbConfigError as exc:
        assert "dbconfig.json" in str(exc)


@pytest.mark.parametrize(
    "environ",
    [
        {"DBCONFIG_DEFAULT_PORT_FILE": "/"},
        {"DBCONFIG_DEFAULT_HOST_FILE": "/dev/null/x"},
        {"DBCONFIG_SECRETS_DIR": "/dev/null"},
        {"DBCONFIG_FILE": "/"},
        {"DBCONFIG_FILE": "\x00"},
        {"DBCONFIG__HOST": "x"},
        {"DBCONFIG_": "x"},
        {"DBCONFIG_DEFAULT_OPTIONS": "[1]"},
        {"DBCONFIG_DEFAULT_POOL": "maybe"},
        {"DATABASE_URL": "postgresql://u@h/app", "DBCONFIG_DEFAULT_POOL": '{"min_size": 2', "x": "y"},
    ],
)
def test_odd_environment_raises_only_dbconfig_error(project: Any, environ: dict[str, str]) -> None:
    with pytest.raises(DbConfigError):
        project.load(environ)


def test_odd_arguments_raise_only_dbconfig_error(project: Any) -> None:
    with pytest.raises(DbConfigError):
        load_config(project.root, environ={}, overrides=["not", "a", "mapping"])  # type: ignore[list-item]
    with pytest.raises(DbConfigError):
        load_config(project.root / "missing" / "\x00", environ={})
    with pytest.raises(DbConfigError):
        with override(42):  # type: ignore[arg-type]
            pass


@pytest.mark.skipif(django.VERSION < (5, 1), reason="before Django 5.1 pool itself is refused")
def test_pool_with_an_explicit_conn_max_age_is_an_error(project: Any) -> None:
    project.write_config({"databases": {"default": {**PG, "pool": True, "conn_max_age": 30}}})
    with pytest.raises(DbConfigError) as info:
        project.load()
    assert str(info.value) == (
        'dbconfig.json: databases.default.conn_max_age (alias "default"): conn_max_age must be 0 or unset '
        "with pool (the pool keeps the connections). Remove conn_max_age for this alias."
    )


def test_error_is_improperly_configured() -> None:
    from django.core.exceptions import ImproperlyConfigured

    assert issubclass(DbConfigError, ImproperlyConfigured)


def test_missing_default_config_file_is_fine_but_explicit_one_is_an_error(project: Any) -> None:
    assert project.load().aliases == ("default",)
    with pytest.raises(DbConfigError, match=r"^missing\.json: the configuration file does not exist"):
        project.load(config_file="missing.json")


def test_build_databases_raises_the_same_errors(project: Any) -> None:
    project.write_config({"databases": {"default": {"backend": "oracle"}}})
    with pytest.raises(DbConfigError, match="backend"):
        build_databases(project.root, environ={})


def test_repr_of_config_and_sources_hides_secrets(project: Any) -> None:
    project.write_config({"databases": {"default": {**PG, "password": SECRET}}})
    config = project.load({"DATABASE_URL": f"postgresql://u:{SECRET}@h/app"})
    assert repr(config) == (
        f"DatabaseConfig(aliases=('default',), sources=(\"JsonFileSource(JsonFile('{project.root}/dbconfig.json', "
        f"required=False))\", \"SecretsFileSource(JsonFile('{project.root}/.secrets/dbconfig.json', "
        'required=False), environment=None)", "EnvironSource(variables=[\'DATABASE_URL\'])", '
        "'OverrideSource(count=0)'))"
    )
    # Only the variables this project reads are named (never their values).
    environ = {
        "DATABASE_URL": "postgresql://h/app",
        "DBCONFIG_DEFAULT_USER": "u",
        "REPORTS_DATABASE_URL": "x",
        "HOME": "/",
    }
    assert repr(EnvironSource(environ, base_dir=project.root)) == (
        "EnvironSource(variables=['DATABASE_URL', 'DBCONFIG_DEFAULT_USER', 'REPORTS_DATABASE_URL'])"
    )
    assert repr(DefaultsSource()) == "DefaultsSource()"
    assert SECRET not in json.dumps([row.__dict__ for row in config.explain("default")])
    assert {row.key: row.value for row in config.explain("default")}["url"] == "postgresql://u:********@h/app"


def test_override_rejects_unknown_keys_at_load(project: Any) -> None:
    async def main() -> None:
        with override({"databases.default.hots": "x"}):
            with pytest.raises(DbConfigError, match='Did you mean "host"'):
                project.load()

    asyncio.run(main())
    assert Path(project.root).exists()


def test_current_schema_in_a_url_becomes_the_search_path(tmp_path: Any) -> None:
    # dj-database-url turns ?currentSchema= into a libpq option; the URL's layer reads it as the key.
    config = load_config(tmp_path, environ={"DATABASE_URL": "postgresql://h/app?currentSchema=App,public"})
    assert config.values("default")["search_path"] == ("App", "public")
    assert "-c search_path=" in config.databases()["default"]["OPTIONS"]["options"]
    rows = {row.key: row.source for row in config.explain("default")}
    assert rows["search_path"] == "DATABASE_URL"


@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        # Not a mode MySQL knows, and not a mysqlclient keyword: the driver would refuse it.
        ("mysql://u@h/app?ssl-mode=bogus", "ssl-mode"),
        # A URL cannot set its own url.
        ("postgresql://h/app?url=x", "url"),
    ],
)
def test_query_options_that_are_neither_keys_nor_driver_options_are_refused(
    tmp_path: Path, url: str, parameter: str
) -> None:
    with pytest.raises(DbConfigError) as caught:
        load_config(tmp_path, environ={"DATABASE_URL": url})
    message = str(caught.value)
    assert f'the URL\'s query parameter "{parameter}" is neither a key nor an option of the' in message
    assert 'Did you mean "url"' not in message


@pytest.mark.parametrize(
    ("url", "rows"),
    [
        (
            "mysql://u@h/app?ssl-ca=/etc/ca.pem&ssl-mode=VERIFY_CA",
            {"sslmode": ("verify-ca", "DATABASE_URL"), "sslrootcert": ("/etc/ca.pem", "DATABASE_URL")},
        ),
        ("mysql://u@h/app?ssl_mode=disabled", {"sslmode": ("disable", "DATABASE_URL")}),
        ("mysql://u@h/app?ssl-mode=REQUIRED", {"sslmode": ("require", "DATABASE_URL")}),
        ("mysql://u@h/app?ssl_mode=VERIFY_IDENTITY", {"sslmode": ("verify-full", "DATABASE_URL")}),
        # The parser reads 2024 as a number; the key takes the text as written.
        ("postgresql://h/app?application_name=2024", {"application_name": ("2024", "DATABASE_URL")}),
        # Key names match in any case.
        ("postgresql://h/app?Connect_Timeout=9", {"connect_timeout": ("9s", "DATABASE_URL")}),
        # An `options` that sets no search_path stays a driver option.
        (
            "postgresql://h/app?options=-c%20geqo%3Doff",
            {"options.options": ("-c geqo=off", "DATABASE_URL: options")},
        ),
        (
            "postgresql://h/app?connect_timeout=7&application_name=x&sslmode=require",
            {
                "sslmode": ("require", "DATABASE_URL"),
                "connect_timeout": ("7s", "DATABASE_URL"),
                "application_name": ("x", "DATABASE_URL"),
            },
        ),
    ],
)
def test_query_options_of_a_url_become_alias_keys_where_they_name_one(
    tmp_path: Path, url: str, rows: dict[str, tuple[str, str]]
) -> None:
    config = load_config(tmp_path, environ={"DATABASE_URL": url})
    common = {"url", "backend", "host", "name", "user", "port", "conn_max_age", "conn_health_checks"}
    shown = {
        row.key: (row.value, row.source)
        for row in config.explain("default")
        if row.key not in common and row.source != "default"
    }
    assert shown == rows


def test_a_url_password_with_an_unencoded_at_sign_is_masked_whole(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={"DATABASE_URL": f"postgresql://u:p@{SECRET}@h/app"})
    assert config.databases()["default"]["PASSWORD"] == f"p@{SECRET}"
    assert {row.key: row.value for row in config.explain("default")}["url"] == "postgresql://u:********@h/app"


@pytest.mark.parametrize(
    ("overrides", "where"),
    [({"databases": {"default": {1: "x"}}}, "databases.default"), ({"defaults": {1: "x"}}, "defaults")],
)
def test_override_keys_that_are_no_strings_are_refused(project: Any, overrides: Any, where: str) -> None:
    with pytest.raises(DbConfigError) as info:
        project.load(overrides=overrides)
    assert str(info.value) == f"override: {where}: keys must be strings."


def test_overrides_hold_no_profiles(project: Any) -> None:
    with pytest.raises(DbConfigError) as info:
        project.load(overrides={"environments": {"prod": {}}})
    assert (
        str(info.value)
        == "override: environments: environments are not allowed here. Put profiles in dbconfig.json."
    )


def test_every_variable_that_is_no_string_is_listed(project: Any) -> None:
    with pytest.raises(DbConfigError) as info:
        project.load({"DATABASE_URL": 5, "DBCONFIG_DEFAULT_USER": 7})
    assert str(info.value) == (
        "2 problems in the database configuration:\n"
        "- DATABASE_URL: the value is a int, not a string.\n"
        "- DBCONFIG_DEFAULT_USER: the value is a int, not a string."
    )


def test_variables_after_a_value_and_file_pair_are_still_checked(project: Any) -> None:
    with pytest.raises(DbConfigError) as info:
        project.load({"DATABASE_URL": "sqlite:///a", "DATABASE_URL_FILE": "url", "DBCONFIG_DEFAULT_USER": 7})
    assert str(info.value) == (
        "2 problems in the database configuration:\n"
        "- DATABASE_URL and DATABASE_URL_FILE are both set. Set the value or the file, not both.\n"
        "- DBCONFIG_DEFAULT_USER: the value is a int, not a string."
    )
