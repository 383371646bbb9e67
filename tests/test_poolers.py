"""`pooler`: Django behind real PgBouncers (transaction and session mode) in front of PostgreSQL.

The PgBouncers and their PostgreSQL are throwaway ones (tests/pgbouncer.py); each test
gets a fresh database on that server, owned by the app role, so role defaults written
in one test never reach another.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.management import call_command

from django_dbconfig import DbConfigError, build_databases
from django_dbconfig.checks import check_configuration
from django_dbconfig.routers.readonly import ReadOnlyDatabaseError
from tests.pgbouncer import Pooled
from tests.test_dbcheck import PASSWORD, by_alias, dbcheck, dbcheck_json, ids, using_databases

SCHEMA = 'App "Schema"'
SETTINGS = {
    "search_path": [SCHEMA, "public"],
    "statement_timeout": "25s",
    "lock_timeout": "4s",
    "idle_in_transaction_session_timeout": "1min",
}
# What dbcheck reports for SETTINGS (the search_path as a list of names).
REPORTED = {
    "search_path": 'App "Schema", public',
    "statement_timeout": "25s",
    "lock_timeout": "4s",
    "idle_in_transaction_session_timeout": "1min",
}
# What the server's SHOW prints for SETTINGS.
SHOWN = {
    "search_path": '"App ""Schema""", public',
    "statement_timeout": "25s",
    "lock_timeout": "4s",
    "idle_in_transaction_session_timeout": "1min",
}

# As SET by set_config(), SHOW prints the search_path as it was given.
SET_SHOWN = {**SHOWN, "search_path": '"App ""Schema""","public"'}


def configure(tmp_path: Path, databases: Mapping[str, Any]) -> dict[str, Any]:
    return build_databases(tmp_path, environ={}, overrides={"databases": dict(databases)})


@contextlib.contextmanager
def serving_aliases(databases: Mapping[str, Any]) -> Iterator[None]:
    """Make `databases` django.db.connections' settings for the block; close this thread's connections."""
    from django.db import connections

    with using_databases(databases, routers=[]):
        try:
            yield
        finally:
            for alias in databases:
                if hasattr(connections._connections, alias):
                    connections[alias].close()
                    delattr(connections._connections, alias)


def shown(alias: str, names: Any) -> dict[str, str]:
    from django.db import connections

    with connections[alias].cursor() as cursor:
        found = {}
        for name in names:
            cursor.execute(f"SHOW {name}")
            found[name] = cursor.fetchone()[0]
        return found


def create_schema(pooled: Pooled) -> None:
    pooled.server.psql(
        f'CREATE SCHEMA "App ""Schema""" AUTHORIZATION "{pooled.server.user}"', dbname=pooled.dbname
    )


# ---------------------------------------------------------------- rendering (no server)


def test_behind_a_pooler_no_setting_travels_in_the_startup_packet(tmp_path: Path) -> None:
    databases = configure(
        tmp_path,
        {
            "session": {
                "backend": "postgresql",
                "name": "a",
                "pooler": "session",
                "read_only": True,
                **SETTINGS,
            },
            "tx": {"backend": "postgresql", "name": "b", "user": "u", "pooler": "transaction", **SETTINGS},
            "direct": {"backend": "postgresql", "name": "c", **SETTINGS},
        },
    )
    assert "options" not in databases["session"].get("OPTIONS", {})
    assert "options" not in databases["tx"].get("OPTIONS", {})
    assert "statement_timeout=25000ms" in databases["direct"]["OPTIONS"]["options"]
    assert databases["session"]["DBCONFIG"] == {
        "pooler": "session",
        "session_settings": {
            "search_path": '"App ""Schema""","public"',
            "statement_timeout": "25000ms",
            "lock_timeout": "4000ms",
            "idle_in_transaction_session_timeout": "60000ms",
            "default_transaction_read_only": "on",
        },
        "asgi_pool": {},  # pool "asgi", the default
    }
    assert databases["tx"]["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert "DISABLE_SERVER_SIDE_CURSORS" not in databases["session"]
    assert databases["direct"]["DBCONFIG"] == {"asgi_pool": {}}


def test_mysql_behind_a_pooler_keeps_init_command(tmp_path: Path) -> None:
    databases = configure(
        tmp_path,
        {"default": {"backend": "mariadb", "name": "a", "pooler": "transaction", "statement_timeout": "2s"}},
    )
    assert databases["default"]["OPTIONS"]["init_command"] == "SET SESSION max_statement_time=2"
    assert databases["default"]["DBCONFIG"] == {"pooler": "transaction", "network_timeout": 30.0}


def test_pooler_on_sqlite_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError) as info:
        configure(tmp_path, {"default": {"backend": "sqlite", "name": "db.sqlite3", "pooler": "session"}})
    assert str(info.value) == (
        'override: databases.default.pooler (alias "default"): pooler is not supported on SQLite. '
        "SQLite is a local file: there is no server for a pooler to stand in front of. "
        'The backend "sqlite" comes from override: databases.default.backend.'
    )


def test_an_unknown_pooler_mode_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError, match=r'"statement" is not one of "session" or "transaction"'):
        configure(tmp_path, {"default": {"backend": "postgresql", "name": "a", "pooler": "statement"}})


def test_two_transaction_aliases_of_one_role_with_different_settings_are_an_error(tmp_path: Path) -> None:
    server = {"backend": "postgresql", "host": "db", "name": "app", "user": "web", "pooler": "transaction"}
    with pytest.raises(DbConfigError) as info:
        configure(
            tmp_path,
            {
                "default": {**server, "statement_timeout": "30s"},
                "reports": {**server, "statement_timeout": "5min"},
            },
        )
    assert str(info.value) == (
        'override: databases.default.pooler (alias "default"): with pooler "transaction" the session '
        'settings of "default" are the role\'s defaults in the database, and "reports" uses the same '
        'role "web" on database "app" with different statement_timeout: each would get the other\'s. '
        "Give each alias its own role (user), or the same settings."
    )
    # Separate roles, or the same settings, are fine.
    configure(
        tmp_path,
        {
            "default": {**server, "statement_timeout": "30s"},
            "reports": {**server, "user": "reporter", "statement_timeout": "5min"},
            "same": {**server, "statement_timeout": "30s"},
        },
    )


def test_a_session_alias_of_the_role_would_inherit_the_transaction_alias_defaults(tmp_path: Path) -> None:
    server = {"backend": "postgresql", "host": "db", "name": "app", "user": "web"}
    with pytest.raises(DbConfigError) as info:
        configure(
            tmp_path,
            {
                "readonly": {**server, "pooler": "transaction", "read_only": True, "lock_timeout": "2s"},
                "writer": {**server, "pooler": "session", "lock_timeout": "5s"},
            },
        )
    assert str(info.value) == (
        'override: databases.readonly.pooler (alias "readonly"): with pooler "transaction" the session '
        'settings of "readonly" are the role\'s defaults in the database, and "writer" uses the same '
        'role "web" on database "app": it would start with the role\'s default_transaction_read_only. '
        "Give each alias its own role (user), or the same settings."
    )
    # Setting every one of them itself, it is not affected.
    configure(
        tmp_path,
        {
            "readonly": {**server, "pooler": "transaction", "read_only": True},
            "writer": {**server, "pooler": "session", "read_only": False},
        },
    )


def test_server_side_cursors_cannot_be_turned_back_on_behind_a_transaction_pooler(tmp_path: Path) -> None:
    with pytest.raises(DbConfigError, match="cannot keep a named cursor across transactions"):
        configure(
            tmp_path,
            {
                "default": {
                    "backend": "postgresql",
                    "name": "a",
                    "pooler": "transaction",
                    "disable_server_side_cursors": False,
                }
            },
        )


@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool exists from 5.1")
def test_pool_with_a_pooler_is_a_warning(tmp_path: Path) -> None:
    databases = configure(
        tmp_path,
        {
            "default": {"backend": "postgresql", "name": "a", "pooler": "transaction", "pool": True},
            "plain": {"backend": "postgresql", "name": "b", "pool": True},
        },
    )
    with using_databases(databases):
        messages = [(m.id, m.msg) for m in check_configuration()]
    assert messages == [
        (
            "dbconfig.W011",
            '"default" has both pool and pooler "transaction": two pools in a row hold server connections '
            "twice, and the in-process one keeps them busy between requests.",
        )
    ]


# ---------------------------------------------------------------- transaction mode


postgresql = pytest.mark.postgresql


@postgresql
def test_pgbouncer_refuses_startup_options_that_the_pooler_key_leaves_out(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    from tests.conftest import django_connection

    pooled = through_transaction_pooler
    plain = configure(tmp_path, {"pooled": {**pooled.alias(**SETTINGS), "pooler": None}})["pooled"]
    with pytest.raises(Exception, match="unsupported startup parameter: options"):
        with django_connection(plain):
            pass
    behind = configure(tmp_path, {"pooled": pooled.alias(**SETTINGS)})["pooled"]
    with django_connection(behind) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == pooled.dbname


@postgresql
def test_apply_settings_writes_the_role_defaults_and_dbcheck_reads_them_through_the_pooler(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    pooled = through_transaction_pooler
    create_schema(pooled)
    databases = configure(tmp_path, {"pooled": pooled.alias(**SETTINGS, application_name="web")})

    status, before = dbcheck_json(databases)
    assert status == 1
    db = by_alias(before)["pooled"]
    missing = "through the transaction pooler, but {} is configured: it is not among the role's defaults in this database."
    assert ids(db) == ["dbconfig.E115"] * 4
    assert [p["message"] for p in db["problems"]] == [
        "statement_timeout is 0 " + missing.format("25s"),
        "lock_timeout is 0 " + missing.format("4s"),
        "idle_in_transaction_session_timeout is 0 " + missing.format("1min"),
        "search_path is '$user, public' " + missing.format("'App \"Schema\", public'"),
    ]

    out = io.StringIO()
    with using_databases(databases):
        call_command("dbcheck", "--apply-settings", stdout=out, no_color=True)
    text = out.getvalue()
    assert (
        f'pooled: ALTER ROLE "app" IN DATABASE "{pooled.dbname}" SET "statement_timeout" TO \'25000ms\''
        in text
    )
    assert PASSWORD not in text

    stored = pooled.server.psql(
        "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = %s ORDER BY 1",
        [pooled.dbname],
        dbname="postgres",
    )
    assert [row[0] for row in stored] == [
        "idle_in_transaction_session_timeout=60000ms",
        "lock_timeout=4000ms",
        'search_path="App ""Schema""", public',
        "statement_timeout=25000ms",
    ]
    status, after = dbcheck_json(databases)
    assert status == 0, after
    db = by_alias(after)["pooled"]
    assert db["problems"] == []
    assert {name: check["actual"] for name, check in db["settings"].items()} == {
        **REPORTED,
        "application_name": "web",
        "read_only": False,
    }
    # What Django's own connections run with, through the pooler.
    with serving_aliases(databases):
        assert shown("pooled", SHOWN) == SHOWN


@postgresql
def test_a_server_connection_older_than_the_role_defaults_is_explained(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    import psycopg

    pooled = through_transaction_pooler
    databases = configure(tmp_path, {"pooled": pooled.alias(statement_timeout="7s")})
    # PgBouncer opens a server connection now, before the defaults exist, and keeps it.
    with psycopg.connect(
        **pooled.server.connect_kwargs(
            host=pooled.bouncer.host, port=pooled.bouncer.port, dbname=pooled.dbname
        )
    ) as conn:
        conn.execute("SELECT 1")
    pooled.server.psql(
        f'ALTER ROLE app IN DATABASE "{pooled.dbname}" SET statement_timeout = 7000', dbname="postgres"
    )
    status, result = dbcheck_json(databases)
    assert status == 1
    assert [p["message"] for p in by_alias(result)["pooled"]["problems"]] == [
        "statement_timeout is 0 through the transaction pooler, but 7s is configured: the role's default "
        "is right, but this server connection of the pooler was opened before it was written."
    ]
    pooled.bouncer.admin(f"RECONNECT {pooled.dbname}")
    status, result = dbcheck_json(databases)
    assert status == 0, result


@postgresql
def test_migrate_and_the_orm_through_the_transaction_pooler(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    from tests.apps.shop.models import Order

    pooled = through_transaction_pooler
    create_schema(pooled)
    databases = configure(tmp_path, {"pooled": pooled.alias(**SETTINGS)})
    with using_databases(databases):
        call_command("dbcheck", "--apply-settings", "--database", "pooled", stdout=io.StringIO())
    with serving_aliases(databases):
        call_command("migrate", database="pooled", verbosity=0)
        Order.objects.using("pooled").bulk_create([Order(reference=f"r{i}") for i in range(7)])
        assert Order.objects.using("pooled").filter(reference__gte="r3").count() == 4
        assert [o.reference for o in Order.objects.using("pooled").order_by("id").iterator(chunk_size=2)] == [
            f"r{i}" for i in range(7)
        ]
    # The tables went to the first schema of the search_path, set as the role's default.
    tables = pooled.server.psql(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'shop_order'",
        dbname=pooled.dbname,
    )
    assert tables == [(SCHEMA,)]


@postgresql
def test_iterator_through_a_transaction_pooler_needs_server_side_cursors_off(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    """A named cursor declared on one server connection is gone when the next FETCH lands on another."""
    import psycopg
    from django.db.utils import DatabaseError

    from tests.apps.shop.models import Order

    pooled = through_transaction_pooler
    databases = configure(tmp_path, {"pooled": pooled.alias()})
    without = copy.deepcopy(databases)
    without["pooled"]["DISABLE_SERVER_SIDE_CURSORS"] = False
    other_client = pooled.server.connect_kwargs(
        host=pooled.bouncer.host, port=pooled.bouncer.port, dbname=pooled.dbname
    )

    def iterate(entries: dict[str, Any]) -> list[str]:
        with serving_aliases(entries):
            rows = Order.objects.using("pooled").order_by("id").iterator(chunk_size=2)
            first = next(rows)
            # Another client's transaction takes the server connection the cursor was declared on.
            with psycopg.connect(**other_client) as other:
                other.execute("SELECT 1")
                return [first.reference, *(o.reference for o in rows)]

    with serving_aliases(databases):
        call_command("migrate", "shop", database="pooled", verbosity=0)
        Order.objects.using("pooled").bulk_create([Order(reference=f"r{i}") for i in range(5)])
    # Django's ProgrammingError from the FETCH, then psycopg's own from closing the cursor.
    with pytest.raises(Exception, match=r'cursor "_django_curs_\w+" does not exist') as info:
        iterate(without)
    assert isinstance(info.value.__context__, DatabaseError)
    assert iterate(databases) == [f"r{i}" for i in range(5)]


@postgresql
def test_read_only_through_the_transaction_pooler_refuses_writes(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    pooled = through_transaction_pooler
    pooled.server.psql("CREATE TABLE t (x int)", dbname=pooled.dbname)
    pooled.server.psql(f'ALTER TABLE t OWNER TO "{pooled.server.user}"', dbname=pooled.dbname)
    databases = configure(tmp_path, {"ro": pooled.alias(read_only=True)})
    with using_databases(databases):
        call_command("dbcheck", "--apply-settings", "--database", "ro", stdout=io.StringIO())
    status, result = dbcheck_json(databases)
    assert status == 0, result
    assert by_alias(result)["ro"]["settings"]["read_only"] == {
        "expected": True,
        "actual": True,
        "ok": True,
    }
    from django.db import connections

    with serving_aliases(databases):
        with pytest.raises(ReadOnlyDatabaseError, match="database alias 'ro' is read-only"):
            with connections["ro"].cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (1)")
    assert pooled.server.psql("SELECT count(*) FROM t", dbname=pooled.dbname) == [(0,)]


@postgresql
def test_dbcheck_reports_tls_between_the_client_and_the_pooler(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    pooled = through_transaction_pooler
    assert pooled.bouncer.ca_path is not None
    databases = configure(
        tmp_path,
        {
            "tls": pooled.alias(
                sslmode="verify-full", sslrootcert=str(pooled.bouncer.ca_path), host="localhost"
            ),
            "plain": pooled.alias(sslmode="disable"),
        },
    )
    status, result = dbcheck_json(databases)
    assert status == 0, by_alias(result)["tls"]["problems"]
    tls = by_alias(result)["tls"]["tls"]
    assert (tls["in_use"], tls["verified"], tls["version"]) == (True, True, "TLSv1.3")
    assert by_alias(result)["plain"]["tls"]["in_use"] is False
    # PgBouncer reaches the server in plain text: the server's view would have said no TLS.
    assert pooled.server.psql("SELECT bool_or(ssl) FROM pg_stat_ssl") in ([(False,)], [(None,)])


@postgresql
def test_sslmode_require_through_an_undeclared_pooler_is_an_error_when_the_server_link_is_plain(
    tmp_path: Path, through_session_pooler: Pooled
) -> None:
    # Without `pooler`, dbcheck asks the server (pg_stat_ssl), which sees PgBouncer's plain
    # link: TLS that stops at the pooler does not count as the TLS sslmode require asks for.
    pooled = through_session_pooler
    databases = configure(tmp_path, {"undeclared": pooled.alias(sslmode="require", pooler=None)})
    status, result = dbcheck_json(databases)
    report = by_alias(result)["undeclared"]
    assert (status, ids(report), report["tls"]["in_use"]) == (1, ["dbconfig.E103"], False)
    assert report["problems"][0]["message"] == (
        "sslmode require asks for TLS, but the server reports this session as not encrypted."
    )
    # What libpq negotiated with PgBouncer was TLS all the same: declared, the pooler passes.
    databases = configure(tmp_path, {"declared": pooled.alias(sslmode="require")})
    status, result = dbcheck_json(databases)
    declared = by_alias(result)["declared"]
    assert (status, ids(declared), declared["tls"]["in_use"]) == (0, [], True)


# ---------------------------------------------------------------- session mode


@postgresql
def test_session_pooler_settings_are_set_on_each_new_connection_and_read_back(
    tmp_path: Path, through_session_pooler: Pooled
) -> None:
    pooled = through_session_pooler
    create_schema(pooled)
    databases = configure(tmp_path, {"pooled": pooled.alias(**SETTINGS)})
    # --apply-settings has nothing to write for a session pooler.
    status, result = dbcheck_json(databases, "--apply-settings")
    assert status == 0, result
    assert {name: check["actual"] for name, check in by_alias(result)["pooled"]["settings"].items()} == {
        **REPORTED,
        "read_only": False,
    }
    with serving_aliases(databases):
        assert shown("pooled", SHOWN) == SET_SHOWN
        from django.db import connections

        # A reconnect sets them again (PgBouncer reset the server session in between).
        connections["pooled"].close()
        assert shown("pooled", SHOWN) == SET_SHOWN
    # Nothing was written on the server: they are this session's own.
    assert pooled.server.psql("SELECT count(*) FROM pg_db_role_setting") == [(0,)]


@postgresql
def test_migrate_the_orm_and_named_cursors_through_the_session_pooler(
    tmp_path: Path, through_session_pooler: Pooled
) -> None:
    import psycopg
    from django.db import connections

    from tests.apps.shop.models import Order

    pooled = through_session_pooler
    create_schema(pooled)
    databases = configure(tmp_path, {"pooled": pooled.alias(**SETTINGS)})
    assert "DISABLE_SERVER_SIDE_CURSORS" not in databases["pooled"]
    other_client = pooled.server.connect_kwargs(
        host=pooled.bouncer.host, port=pooled.bouncer.port, dbname=pooled.dbname
    )
    with serving_aliases(databases):
        call_command("migrate", database="pooled", verbosity=0)
        Order.objects.using("pooled").bulk_create([Order(reference=f"r{i}") for i in range(5)])
        # A named cursor: this client keeps its server connection, whatever other clients do.
        rows = Order.objects.using("pooled").order_by("id").iterator(chunk_size=2)
        first = next(rows)
        with connections["pooled"].cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_cursors")
            assert cursor.fetchone()[0] == 1
        with psycopg.connect(**other_client) as other:
            other.execute("SELECT 1")
            assert [first.reference, *(o.reference for o in rows)] == [f"r{i}" for i in range(5)]
    tables = pooled.server.psql(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'shop_order'",
        dbname=pooled.dbname,
    )
    assert tables == [(SCHEMA,)]


@postgresql
def test_read_only_through_the_session_pooler_refuses_writes(
    tmp_path: Path, through_session_pooler: Pooled
) -> None:
    from django.db import connections

    pooled = through_session_pooler
    pooled.server.psql("CREATE TABLE t (x int)", dbname=pooled.dbname)
    pooled.server.psql(f'ALTER TABLE t OWNER TO "{pooled.server.user}"', dbname=pooled.dbname)
    databases = configure(tmp_path, {"ro": pooled.alias(read_only=True)})
    status, output = dbcheck(databases)
    assert status == 0, output
    with serving_aliases(databases):
        with pytest.raises(ReadOnlyDatabaseError, match="database alias 'ro' is read-only"):
            with connections["ro"].cursor() as cursor:
                cursor.execute("INSERT INTO t VALUES (1)")
    assert pooled.server.psql("SELECT count(*) FROM t", dbname=pooled.dbname) == [(0,)]


@postgresql
def test_apply_settings_that_cannot_connect_is_an_error_of_the_alias(
    tmp_path: Path, through_transaction_pooler: Pooled
) -> None:
    pooled = through_transaction_pooler
    databases = configure(
        tmp_path, {"pooled": pooled.alias(statement_timeout="3s", password="not-the-password")}
    )
    status, result = dbcheck_json(databases, "--apply-settings")
    assert status == 1
    db = by_alias(result)["pooled"]
    assert ids(db) == ["dbconfig.E101", "dbconfig.E116"]
    assert db["problems"][1]["message"].startswith(
        "--apply-settings could not connect to write the role's defaults: OperationalError:"
    )
    assert db["problems"][1]["message"].endswith("FATAL:  SASL authentication failed")
    assert "not-the-password" not in json.dumps(result)
