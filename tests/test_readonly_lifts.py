"""Statements that would lift read-only mode are refused on read-only aliases and replicas.

On the machine's shared servers, through a persistent connection: the lifting
statement is refused before it is sent, nothing is written, and the next request on
the same server session is still read-only. Tables live in a schema (PostgreSQL) or
under a name (MariaDB) of their own, dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import signals
from django.db import InternalError, OperationalError, connections, transaction

from django_dbconfig import build_databases
from django_dbconfig.routers import ReadOnlyDatabaseError, connect_signals
from tests.test_readonly import mariadb_table, pg_schema  # noqa: F401 (fixtures)
from tests.test_router import registered

ALIAS = "ro_lifts"
FIX = f"Send writes to another alias, or remove read_only for '{ALIAS}'."
WHY = f"read-only (read_only: true in override: databases.{ALIAS}.read_only)"


def refusal(form: str) -> str:
    return f"database alias '{ALIAS}' is {WHY}: this statement would lift read-only mode ({form}), so it was not sent. {FIX}"


def next_request() -> None:
    """A request ends and the next begins: persistent connections are kept."""
    signals.request_finished.send(sender=None)
    signals.request_started.send(sender=None)


def run(sql: str, params: Any = None) -> None:
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(sql, params)


def one(sql: str, params: Any = None) -> Any:
    with connections[ALIAS].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


# ---------------------------------------------------------------------- PostgreSQL


def pg_entry(postgres: dict[str, Any], schema: str, **keys: Any) -> dict[str, Any]:
    return {
        "backend": "postgresql",
        "host": postgres["host"],
        "port": postgres["port"],
        "user": postgres["user"],
        "name": postgres["dbname"],
        "search_path": [schema],
        "read_only": True,
        "conn_max_age": 600,  # one server session across requests
        **keys,
    }


@pytest.fixture
def pg_alias(tmp_path: Path, shared_postgres: dict[str, Any], pg_schema: str, request: Any) -> Iterator[str]:  # noqa: F811
    keys = getattr(request, "param", {})
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": ":memory:"},
                ALIAS: pg_entry(shared_postgres, pg_schema, **keys),
            }
        },
    )
    connect_signals()
    with registered({ALIAS: databases[ALIAS]}):
        yield pg_schema


def pg_rows(postgres: dict[str, Any], schema: str) -> int:
    import psycopg

    with psycopg.connect(**postgres, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".reports_dailytotal').fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else -1


PG_INSERT = "INSERT INTO reports_dailytotal (day, total) VALUES ('2024-01-01', 1)"
# (statement, parameters, run inside atomic(), the form the refusal names)
PG_LIFTS = [
    (
        "SET default_transaction_read_only = off",
        None,
        False,
        "SET default_transaction_read_only to anything but on",
    ),
    (
        "set Session default_transaction_read_only TO 'false'",
        None,
        False,
        "SET default_transaction_read_only to anything but on",
    ),
    (
        "SET default_transaction_read_only TO DEFAULT",
        None,
        False,
        "SET default_transaction_read_only to anything but on",
    ),
    (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        None,
        False,
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    ),
    ("SET TRANSACTION READ WRITE", None, True, "SET TRANSACTION READ WRITE"),
    ("SET LOCAL transaction_read_only = 0", None, True, "SET transaction_read_only to anything but on"),
    ("BEGIN READ WRITE", None, False, "BEGIN ... READ WRITE"),
    (
        "START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE",
        None,
        False,
        "START TRANSACTION ... READ WRITE",
    ),
    (
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        None,
        False,
        "set_config('default_transaction_read_only', ...) to anything but on",
    ),
    (
        "SELECT set_config(%s, %s, false)",
        ["default_transaction_read_only", "off"],
        False,
        "set_config() of a read-only setting",
    ),
    (
        "SELECT 1; /* then */ SET default_transaction_read_only = no",
        None,
        False,
        "SET default_transaction_read_only to anything but on",
    ),
]


@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("statement", "params", "in_atomic", "form"), PG_LIFTS, ids=[lift[0][:40] for lift in PG_LIFTS]
)
def test_postgresql_refuses_statements_lifting_read_only_and_the_next_request_is_still_read_only(
    shared_postgres: dict[str, Any], pg_alias: str, statement: str, params: Any, in_atomic: bool, form: str
) -> None:
    pid = one("SELECT pg_backend_pid()")
    with pytest.raises(ReadOnlyDatabaseError) as caught:
        if in_atomic:
            with transaction.atomic(using=ALIAS):
                run(statement, params)
                run(PG_INSERT)
        else:
            run(statement, params)
            run(PG_INSERT)
            run("COMMIT")  # of BEGIN or START TRANSACTION
    assert str(caught.value) == refusal(form)
    assert isinstance(caught.value, InternalError)  # as the server's refusal of a write
    # Not sent: the server session is as it was, and still refuses a write.
    assert (one("SHOW default_transaction_read_only"), one("SHOW transaction_read_only")) == ("on", "on")
    with pytest.raises(ReadOnlyDatabaseError, match="the server refused this write"):
        run(PG_INSERT)
    next_request()
    assert one("SELECT pg_backend_pid()") == pid  # the same server session
    assert (one("SHOW default_transaction_read_only"), one("SHOW transaction_read_only")) == ("on", "on")
    with pytest.raises(ReadOnlyDatabaseError, match="the server refused this write"):
        run(PG_INSERT)
    assert pg_rows(shared_postgres, pg_alias) == 0


PG_ORDINARY = [
    ("SELECT 'SET default_transaction_read_only = off'", "SET default_transaction_read_only = off"),
    ("SELECT 'x' -- SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "x"),
    ("SELECT /* BEGIN READ WRITE */ $q$START TRANSACTION READ WRITE$q$", "START TRANSACTION READ WRITE"),
    (
        "SELECT E'it\\'s; SET default_transaction_read_only=off'",
        "it's; SET default_transaction_read_only=off",
    ),
    ("SELECT set_config('statement_timeout', '5s', false)", "5s"),
    ("SELECT set_config('default_transaction_read_only', 'on', false)", "on"),
    ("SELECT current_setting('default_transaction_read_only')", "on"),
]


@pytest.mark.postgresql
@pytest.mark.parametrize(("statement", "answer"), PG_ORDINARY, ids=[q[0][:40] for q in PG_ORDINARY])
def test_postgresql_guard_leaves_these_words_in_literals_comments_and_other_settings_alone(
    pg_alias: str, statement: str, answer: str
) -> None:
    assert one(statement) == answer
    assert one("SHOW default_transaction_read_only") == "on"


@pytest.mark.postgresql
@pytest.mark.parametrize("statement", ["RESET ALL", "DISCARD ALL", "RESET default_transaction_read_only"])
def test_postgresql_without_a_pooler_a_reset_returns_to_the_startup_settings_and_stays_read_only(
    shared_postgres: dict[str, Any], pg_alias: str, statement: str
) -> None:
    if statement.startswith("RESET default"):
        with pytest.raises(ReadOnlyDatabaseError) as caught:
            run(statement + "; SELECT 1")
        assert str(caught.value) == refusal("RESET default_transaction_read_only")
    else:
        run(statement)
    assert (one("SHOW default_transaction_read_only"), one("SHOW search_path")) == ("on", f'"{pg_alias}"')
    with pytest.raises(ReadOnlyDatabaseError, match="the server refused this write"):
        run(PG_INSERT)
    assert pg_rows(shared_postgres, pg_alias) == 0


@pytest.mark.postgresql
@pytest.mark.parametrize("pg_alias", [{"pooler": "session"}], indirect=True)
@pytest.mark.parametrize("statement", ["RESET ALL", "discard all", "RESET default_transaction_read_only"])
def test_postgresql_under_a_session_pooler_a_reset_of_the_settings_is_refused(
    shared_postgres: dict[str, Any], pg_alias: str, statement: str
) -> None:
    # Under `pooler: session` the settings were SET after the connection opened: a reset clears them.
    assert one(
        "SELECT setting || ' ' || source FROM pg_settings WHERE name = 'default_transaction_read_only'"
    ) == ("on session")
    with pytest.raises(ReadOnlyDatabaseError) as caught:
        run(statement + "; SELECT 1")
    first = statement.split(maxsplit=1)[0].upper()
    form = (
        "RESET default_transaction_read_only"
        if "default" in statement
        else f"{first} ALL, under pooler: session"
    )
    assert str(caught.value) == refusal(form)
    next_request()
    assert (one("SHOW default_transaction_read_only"), one("SHOW search_path")) == ("on", f'"{pg_alias}"')
    with pytest.raises(ReadOnlyDatabaseError, match="the server refused this write"):
        run(PG_INSERT)
    assert pg_rows(shared_postgres, pg_alias) == 0


@pytest.mark.postgresql
def test_postgresql_replica_refuses_a_lift_naming_its_primary(
    tmp_path: Path,
    shared_postgres: dict[str, Any],
    pg_schema: str,  # noqa: F811
) -> None:
    entry = pg_entry(shared_postgres, pg_schema)
    del entry["read_only"]  # a replica is read-only unless it says otherwise
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": ":memory:"},
                "primary": {**entry, "backend": "postgresql"},
                "replica": {"host": shared_postgres["host"], "replica_of": "primary"},
            }
        },
    )
    connect_signals()
    with registered({"primary": databases["primary"], "replica": databases["replica"]}):
        with pytest.raises(ReadOnlyDatabaseError) as caught, connections["replica"].cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        with connections["replica"].cursor() as cursor:
            cursor.execute("SHOW default_transaction_read_only")
            assert cursor.fetchone()[0] == "on"
    assert str(caught.value) == (
        "database alias 'replica' is a read replica of 'primary': this statement would lift read-only mode "
        "(SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE), so it was not sent. "
        "Writes go to 'primary' (let the router choose, or use .using('primary'))."
    )


# ------------------------------------------------------------------------- MariaDB


@pytest.fixture
def mariadb_alias(tmp_path: Path, shared_mariadb: dict[str, Any], mariadb_table: str) -> Iterator[str]:  # noqa: F811
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {"backend": "sqlite", "name": ":memory:"},
                ALIAS: {
                    "backend": "mariadb",
                    "host": shared_mariadb["host"],
                    "port": shared_mariadb["port"],
                    "user": shared_mariadb["user"],
                    "name": shared_mariadb["database"],
                    "read_only": True,
                    "conn_max_age": 600,
                },
            }
        },
    )
    connect_signals()
    with registered({ALIAS: databases[ALIAS]}):
        yield mariadb_table


def mariadb_rows(mariadb: dict[str, Any], table: str) -> int:
    import MySQLdb

    conn = MySQLdb.connect(**mariadb, connect_timeout=5)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT count(*) FROM `{table}`")
        return int(cursor.fetchone()[0])
    finally:
        conn.close()


MARIADB_LIFTS = [
    ("SET SESSION TRANSACTION READ WRITE", "SET SESSION TRANSACTION READ WRITE"),
    ("SET TRANSACTION READ WRITE", "SET TRANSACTION READ WRITE"),
    ("SET @@session.tx_read_only = 0", "SET tx_read_only to anything but 1"),
    ("SET @@SESSION.transaction_read_only = OFF", "SET transaction_read_only to anything but 1"),
    ("SET tx_read_only=0", "SET tx_read_only to anything but 1"),
    ("SET SESSION tx_read_only = FALSE", "SET tx_read_only to anything but 1"),
    ("set @@tx_read_only := 'OFF'", "SET tx_read_only to anything but 1"),
    ("SET sql_mode = 'STRICT_ALL_TABLES', SESSION tx_read_only = 0", "SET tx_read_only to anything but 1"),
    ("/*!100000 SET tx_read_only = 0 */", "SET tx_read_only to anything but 1"),
    ("START TRANSACTION READ WRITE", "START TRANSACTION ... READ WRITE"),
]


@pytest.mark.mariadb
@pytest.mark.parametrize(("statement", "form"), MARIADB_LIFTS, ids=[lift[0][:40] for lift in MARIADB_LIFTS])
def test_mariadb_refuses_statements_lifting_read_only_and_the_next_request_is_still_read_only(
    shared_mariadb: dict[str, Any], mariadb_alias: str, statement: str, form: str
) -> None:
    insert = f"INSERT INTO `{mariadb_alias}` VALUES (1)"
    session = one("SELECT CONNECTION_ID()")
    with pytest.raises(ReadOnlyDatabaseError) as caught:
        run(statement)
        run(insert)
        run("COMMIT")  # of START TRANSACTION
    assert str(caught.value) == refusal(form)
    assert isinstance(caught.value, OperationalError)  # as the server's refusal of a write
    assert one("SELECT @@session.tx_read_only") == 1
    with pytest.raises(ReadOnlyDatabaseError, match="the server refused this write"):
        run(insert)
    next_request()
    assert one("SELECT CONNECTION_ID()") == session  # the same server session
    assert one("SELECT @@session.tx_read_only") == 1
    with pytest.raises(ReadOnlyDatabaseError, match="the server refused this write"):
        run(insert)
    assert mariadb_rows(shared_mariadb, mariadb_alias) == 0


@pytest.mark.mariadb
def test_mariadb_refuses_a_statement_that_writes_with_read_only_lifted_for_itself(
    shared_mariadb: dict[str, Any], mariadb_alias: str
) -> None:
    with pytest.raises(ReadOnlyDatabaseError) as caught:
        run(f"SET STATEMENT tx_read_only = 0 FOR INSERT INTO `{mariadb_alias}` VALUES (1)")
    assert str(caught.value) == refusal("SET tx_read_only to anything but 1")
    assert mariadb_rows(shared_mariadb, mariadb_alias) == 0


@pytest.mark.mariadb
def test_mariadb_refuses_a_lift_naming_the_variable_in_double_quotes_under_ansi_quotes(
    shared_mariadb: dict[str, Any], mariadb_alias: str
) -> None:
    mode = one("SELECT @@session.sql_mode")
    run("SET SESSION sql_mode = CONCAT(@@session.sql_mode, ',ANSI_QUOTES')")
    try:
        with pytest.raises(ReadOnlyDatabaseError) as caught:
            run('SET "tx_read_only" = 0')
        assert str(caught.value) == refusal("SET tx_read_only to anything but 1")
        assert one("SELECT @@session.tx_read_only") == 1
    finally:
        run("SET SESSION sql_mode = %s", [mode])
    assert mariadb_rows(shared_mariadb, mariadb_alias) == 0


MARIADB_ORDINARY = [
    ("SELECT 'SET SESSION TRANSACTION READ WRITE'", "SET SESSION TRANSACTION READ WRITE"),
    ('SELECT "SET tx_read_only = 0"', "SET tx_read_only = 0"),
    ("SELECT 'it\\'s; SET tx_read_only = 0'", "it's; SET tx_read_only = 0"),
    ("SELECT 'x' # SET tx_read_only = 0", "x"),
    ("SELECT 'x' -- START TRANSACTION READ WRITE", "x"),
    ("SELECT /* SET tx_read_only=0 */ 'x'", "x"),
    ("SELECT @tx_read_only := 0", 0),
    ("SELECT @@session.tx_read_only", 1),
]


@pytest.mark.mariadb
@pytest.mark.parametrize(("statement", "answer"), MARIADB_ORDINARY, ids=[q[0][:40] for q in MARIADB_ORDINARY])
def test_mariadb_guard_leaves_these_words_in_literals_comments_and_user_variables_alone(
    mariadb_alias: str, statement: str, answer: Any
) -> None:
    assert one(statement) == answer
    assert one("SELECT @@session.tx_read_only") == 1


# ------------------------------------------------------- the rule, without a server

PG_FORMS = {
    "SET default_transaction_read_only = off": "SET default_transaction_read_only to anything but on",
    "SET LOCAL default_transaction_read_only TO 'no'": "SET default_transaction_read_only to anything but on",
    'SET "default_transaction_read_only" = f': "SET default_transaction_read_only to anything but on",
    "SET default_transaction_read_only = %s": "SET default_transaction_read_only to anything but on",
    "SET transaction_read_only = off": "SET transaction_read_only to anything but on",
    "set transaction isolation level serializable, read write": "SET TRANSACTION READ WRITE",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ /* why not */ WRITE": (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"
    ),
    "BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE": "BEGIN ... READ WRITE",
    "begin read write; insert into t values (1); commit": "BEGIN ... READ WRITE",
    "SELECT pg_catalog.set_config('transaction_read_only', 'off', true)": (
        "set_config('transaction_read_only', ...) to anything but on"
    ),
    "SELECT set_config(name, 'off', false) FROM (VALUES ('default_transaction_read_only')) v(name)": (
        "set_config() of a read-only setting"
    ),
    "RESET transaction_read_only": "RESET transaction_read_only",
    "START TRANSACTION READ WRITE": "START TRANSACTION ... READ WRITE",
    # Cut short: refused all the same (the server would report the syntax error).
    "SET default_transaction_read_only": "SET default_transaction_read_only to anything but on",
    "SELECT set_config('transaction_read_only'": "set_config('transaction_read_only', ...) to anything but on",
    "SELECT set_config('transaction_read_only' = 'on', 'off', false)": (  # no comma: no value read
        "set_config('transaction_read_only', ...) to anything but on"
    ),
    # The second call of a statement lifts it.
    "SELECT set_config('statement_timeout', '1s', false), set_config('transaction_read_only', 'off', false)": (
        "set_config('transaction_read_only', ...) to anything but on"
    ),
    "SELECT set_config('transaction_read_only', 'on', false), set_config('transaction_read_only', 'off', false)": (
        "set_config('transaction_read_only', ...) to anything but on"
    ),
}
PG_NOT_LIFTING = [
    "SET default_transaction_read_only = on",
    "SET default_transaction_read_only TO 'true'",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    "UPDATE t SET read_write = true WHERE id = 1",  # refused by the server, not lifting
    'SELECT "read write" FROM t',
    "SELECT 1 /* outer /* nested: SET default_transaction_read_only = off */ still a comment */",
    "SELECT $fn$ BEGIN READ WRITE $fn$",
    "SELECT set_config('statement_timeout', '1s', false)",
    "RESET ALL",  # without pooler: session, back to the startup settings
    "DISCARD ALL",
    "COMMIT",
    "SET statement_timeout = 0",
    "SELECT current_setting('transaction_read_only')",  # reads it
    "SELECT set_config('transaction_read_only', 'on', false)",
    "SELECT set_config(name, 'on', false) FROM settings_to_apply",  # names no read-only setting
    '"set" default_transaction_read_only = off',  # a quoted name, not the SET keyword
    "SET 'default_transaction_read_only' = off",  # a string, not a setting's name
    "SET LOCAL",  # cut short
    "SELECT set_config(",  # cut short
]
MYSQL_FORMS = {
    "SET GLOBAL TRANSACTION READ WRITE": "SET GLOBAL TRANSACTION READ WRITE",
    "SET @@local.tx_read_only = 0": "SET tx_read_only to anything but 1",
    "SET tx_read_only = DEFAULT": "SET tx_read_only to anything but 1",
    "SET tx_read_only = 1 - 1": "SET tx_read_only to anything but 1",
    "SET @@session.`tx_read_only` = 0": "SET tx_read_only to anything but 1",
    "SET `tx_read_only` = 0": "SET tx_read_only to anything but 1",
    # Under sql_mode ANSI_QUOTES "..." is a name; without it the server refuses the statement.
    'SET "TX_READ_ONLY" = 0': "SET tx_read_only to anything but 1",
    'SET @@session."tx_read_only" = 0': "SET tx_read_only to anything but 1",
    "SET SESSION tx_read_only = 1 - 1": "SET tx_read_only to anything but 1",
    "SET tx_read_only := 0": "SET tx_read_only to anything but 1",
    "SET autocommit = 1, tx_read_only = 0": "SET tx_read_only to anything but 1",
    "SET autocommit = @@tx_read_only, tx_read_only = 0": "SET tx_read_only to anything but 1",
    "SET TRANSACTION READ WRITE": "SET TRANSACTION READ WRITE",
    "SET SESSION TRANSACTION READ WRITE": "SET SESSION TRANSACTION READ WRITE",
    "SET LOCAL TRANSACTION READ WRITE": "SET LOCAL TRANSACTION READ WRITE",
    "SET transaction_read_only = '0'": "SET transaction_read_only to anything but 1",
    "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE": "START TRANSACTION ... READ WRITE",
}
MYSQL_NOT_LIFTING = [
    "SET tx_read_only = 1",
    "SET SESSION tx_read_only = ON",
    "SET @tx_read_only = 0",  # a user variable
    "SET SESSION TRANSACTION READ ONLY",
    "SELECT 'SET tx_read_only = 0'",
    "SELECT 1 # SET tx_read_only = 0",
    "SELECT 1 -- SET tx_read_only = 0",
    "SELECT 1--1",  # arithmetic, not a comment: nothing hidden
    "UPDATE t SET tx_read_only = 0",  # a column of a table
    "`set` tx_read_only = 0",  # a quoted name, not the SET keyword: the server refuses it
    "COMMIT",
    "SET @@session.",  # cut short: the server reports the syntax error
    "SET tx_read_only",  # cut short
    "SET tx_read_only = 1, autocommit = 0",
    "SET STATEMENT tx_read_only = 1 FOR SELECT 1",  # MariaDB: read-only for one statement
]


def lift(vendor: str, sql: str, *, session_pooler: bool = False) -> str | None:
    from django_dbconfig.backends import BACKENDS

    return BACKENDS[vendor].read_only_lift(sql, None, session_pooler=session_pooler)


def guard_reads(vendor: str, sql: str, *, session_pooler: bool = False) -> bool:
    """Whether the guard's keyword test lets the statement through to the rule."""
    from django_dbconfig.backends import BACKENDS

    text = sql.lower()
    words = BACKENDS[vendor].read_only_lift_words(session_pooler=session_pooler)
    return any(all(part in text for part in word.split(" ")) for word in words)


@pytest.mark.parametrize(("sql", "form"), PG_FORMS.items(), ids=list(PG_FORMS))
def test_postgresql_lifting_forms_are_named(sql: str, form: str) -> None:
    assert (guard_reads("postgresql", sql), lift("postgresql", sql)) == (True, form)


@pytest.mark.parametrize("sql", PG_NOT_LIFTING)
def test_postgresql_statements_that_do_not_lift_read_only_pass(sql: str) -> None:
    assert lift("postgresql", sql) is None


@pytest.mark.parametrize("sql", ["RESET ALL", "discard all", "DISCARD ALL; SELECT 1"])
def test_postgresql_resets_are_lifting_under_a_session_pooler_only(sql: str) -> None:
    form = f"{sql.split(maxsplit=1)[0].upper()} ALL, under pooler: session"
    assert (guard_reads("postgresql", sql, session_pooler=True), guard_reads("postgresql", sql)) == (
        True,
        False,
    )
    assert (lift("postgresql", sql, session_pooler=True), lift("postgresql", sql)) == (form, None)


def test_postgresql_set_config_with_the_name_in_a_parameter_is_refused() -> None:
    from django_dbconfig.backends import BACKENDS

    found = BACKENDS["postgresql"].read_only_lift(
        "SELECT set_config(%(name)s, %(value)s, false)",
        {"name": "Default_Transaction_Read_Only", "value": "off"},
        session_pooler=False,
    )
    assert found == "set_config() of a read-only setting"


@pytest.mark.parametrize(("sql", "form"), MYSQL_FORMS.items(), ids=list(MYSQL_FORMS))
def test_mysql_lifting_forms_are_named(sql: str, form: str) -> None:
    assert (guard_reads("mysql", sql), lift("mysql", sql)) == (True, form)


@pytest.mark.parametrize("sql", MYSQL_NOT_LIFTING)
def test_mysql_statements_that_do_not_lift_read_only_pass(sql: str) -> None:
    assert lift("mysql", sql) is None


@pytest.mark.parametrize("lifting", [case[0] for case in PG_LIFTS])
def test_every_postgresql_form_tested_on_the_server_passes_the_keyword_test(lifting: str) -> None:
    assert guard_reads("postgresql", lifting)


@pytest.mark.parametrize("lifting", [case[0] for case in MARIADB_LIFTS])
def test_every_mariadb_form_tested_on_the_server_passes_the_keyword_test(lifting: str) -> None:
    assert guard_reads("mysql", lifting)
