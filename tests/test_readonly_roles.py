"""dbcheck says whether a read-only alias's role could write at all (W104), with the REVOKEs.

Real roles on the machine's shared servers, uniquely named and dropped afterwards: one
with SELECT only (no warning) and one with write grants (the warning; the REVOKEs it
gives are then run, and dbcheck passes).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_dbcheck import by_alias, configure, dbcheck, dbcheck_json, ids, sqlite

HINT_END = (
    'or connect "ro" as a role that is no superuser, owns no schema or table of its search_path, '
    "and has only SELECT on its tables."
)


def hint(fix: list[str]) -> str:
    run = "run " + " ".join(f"{statement};" for statement in fix) + " " if fix else ""
    return f"To make it read-only whatever the session does, {run}{HINT_END}"


# ---------------------------------------------------------------------- PostgreSQL


def pg_admin(postgres: dict[str, Any], *statements: str) -> None:
    import psycopg

    with psycopg.connect(**postgres, autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture
def pg_roles(shared_postgres: dict[str, Any]) -> Iterator[dict[str, str]]:
    """A schema with two tables; a SELECT-only role, and a writer with grants to itself and a group."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "schema": f"dbconfig_ro_{tag}",
        "reader": f"ro_{tag}",
        "writer": f"rw_{tag}",
        "group": f"grp_{tag}",
    }
    schema, reader, writer, group = names["schema"], names["reader"], names["writer"], names["group"]
    pg_admin(
        shared_postgres,
        f'CREATE SCHEMA "{schema}"',
        f'CREATE TABLE "{schema}".orders (id int)',
        f'CREATE TABLE "{schema}".lines (id int, qty int)',
        f'CREATE ROLE "{reader}" LOGIN',
        f'CREATE ROLE "{writer}" LOGIN',
        f'CREATE ROLE "{group}" NOLOGIN',
        f'GRANT "{group}" TO "{writer}"',
        f'GRANT USAGE ON SCHEMA "{schema}" TO "{reader}", "{writer}"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{reader}", "{writer}"',
        f'GRANT INSERT, UPDATE ON ALL TABLES IN SCHEMA "{schema}" TO "{writer}"',
        f'GRANT DELETE ON "{schema}".orders TO "{group}"',
        f'GRANT UPDATE (qty) ON "{schema}".lines TO "{group}"',
        f'GRANT CREATE ON SCHEMA "{schema}" TO PUBLIC',
    )
    try:
        yield names
    finally:
        pg_admin(
            shared_postgres,
            f'DROP SCHEMA "{schema}" CASCADE',
            *(f'DROP OWNED BY "{names[role]}"' for role in ("reader", "writer", "group")),
            *(f'DROP ROLE "{names[role]}"' for role in ("reader", "writer", "group")),
        )


def pg_check(tmp_path: Path, postgres: dict[str, Any], schema: str, user: str, **keys: Any) -> dict[str, Any]:
    alias = {
        "backend": "postgresql",
        "host": postgres["host"],
        "port": postgres["port"],
        "name": postgres["dbname"],
        "user": user,
        "search_path": [schema],
        "read_only": True,
        "connect_timeout": "3s",
        **keys,
    }
    databases = configure(tmp_path, {"default": sqlite(tmp_path), "ro": alias})
    status, result = dbcheck_json(databases, "--database", "ro")
    db = by_alias(result)["ro"]
    assert (status, db["settings"]["read_only"]) == (0, {"expected": True, "actual": True, "ok": True})
    return db


@pytest.mark.postgresql
def test_postgresql_role_with_select_only_cannot_write_and_gets_no_warning(
    tmp_path: Path, shared_postgres: dict[str, Any], pg_roles: dict[str, str]
) -> None:
    # PUBLIC's CREATE on the schema is a way to write too: taken away for this test.
    pg_admin(shared_postgres, f'REVOKE CREATE ON SCHEMA "{pg_roles["schema"]}" FROM PUBLIC')
    db = pg_check(tmp_path, shared_postgres, pg_roles["schema"], pg_roles["reader"])
    assert db["write_access"] == {"role": pg_roles["reader"], "can_write": False, "via": [], "fix": []}
    assert ids(db) == []


@pytest.mark.postgresql
def test_postgresql_role_that_can_write_is_a_warning_whose_revokes_make_it_read_only(
    tmp_path: Path, shared_postgres: dict[str, Any], pg_roles: dict[str, str]
) -> None:
    schema, writer, group = pg_roles["schema"], pg_roles["writer"], pg_roles["group"]
    db = pg_check(tmp_path, shared_postgres, schema, writer)
    fix = [
        f'REVOKE CREATE ON SCHEMA "{schema}" FROM PUBLIC',
        f'REVOKE INSERT, UPDATE ON ALL TABLES IN SCHEMA "{schema}" FROM {writer}',
        f'REVOKE UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" FROM {group}',
    ]
    via = [
        f'CREATE on schema "{schema}" (granted to PUBLIC)',
        f'INSERT, UPDATE on 2 tables of schema "{schema}" (granted to {writer})',
        # DELETE on one table, UPDATE on a column of the other.
        f'UPDATE, DELETE on 2 tables of schema "{schema}" (granted to {group})',
    ]
    assert db["write_access"] == {"role": writer, "can_write": True, "via": via, "fix": fix}
    assert db["problems"] == [
        {
            "level": "warning",
            "id": "dbconfig.W104",
            "message": f'The role "{writer}" can write ({"; ".join(via)}): read-only rests on '
            "the session's setting alone, which SQL can lift.",
            "hint": hint(fix),
        }
    ]
    # The hint's statements, run by an administrator, leave the role nothing to write with.
    pg_admin(shared_postgres, *fix)
    after = pg_check(tmp_path, shared_postgres, schema, writer)
    assert (after["write_access"]["can_write"], ids(after)) == (False, [])


@pytest.mark.postgresql
def test_postgresql_owner_and_superuser_can_write_and_no_revoke_helps(
    tmp_path: Path, shared_postgres: dict[str, Any], pg_roles: dict[str, str]
) -> None:
    schema, reader = pg_roles["schema"], pg_roles["reader"]
    pg_admin(
        shared_postgres,
        f'REVOKE CREATE ON SCHEMA "{schema}" FROM PUBLIC',
        f'ALTER TABLE "{schema}".lines OWNER TO "{reader}"',
    )
    owner = pg_check(tmp_path, shared_postgres, schema, reader)
    assert owner["write_access"] == {
        "role": reader,
        "can_write": True,
        "via": [f'owns table "{schema}"."lines"'],
        "fix": [],
    }
    assert [p["hint"] for p in owner["problems"]] == [hint([])]
    superuser = pg_check(tmp_path, shared_postgres, schema, shared_postgres["user"])
    assert superuser["write_access"] == {
        "role": "postgres",
        "can_write": True,
        "via": ["superuser"],
        "fix": [],
    }
    assert ids(superuser) == ["dbconfig.W104"]


@pytest.mark.postgresql
def test_postgresql_text_output_says_whether_the_role_can_write(
    tmp_path: Path, shared_postgres: dict[str, Any], pg_roles: dict[str, str]
) -> None:
    pg_admin(shared_postgres, f'REVOKE CREATE ON SCHEMA "{pg_roles["schema"]}" FROM PUBLIC')
    alias = {
        "backend": "postgresql",
        "host": shared_postgres["host"],
        "name": shared_postgres["dbname"],
        "search_path": [pg_roles["schema"]],
        "read_only": True,
    }
    databases = configure(
        tmp_path,
        {
            "default": sqlite(tmp_path),
            "ro": {**alias, "user": pg_roles["reader"]},
            "rw": {**alias, "user": pg_roles["writer"]},
        },
    )
    status, output = dbcheck(databases, "--database", "ro", "--database", "rw")
    lines = [line.strip() for line in output.splitlines() if line.strip().startswith("writes")]
    assert (status, lines) == (
        0,
        [
            f'writes    role "{pg_roles["reader"]}" cannot write: read-only whatever the session does',
            f'writes    role "{pg_roles["writer"]}" can write (INSERT, UPDATE on 2 tables of schema '
            f'"{pg_roles["schema"]}" (granted to {pg_roles["writer"]}); UPDATE, DELETE on 2 tables of '
            f'schema "{pg_roles["schema"]}" (granted to {pg_roles["group"]}))',
        ],
    )


@pytest.mark.postgresql
def test_postgresql_alias_without_read_only_has_no_write_access_report(
    tmp_path: Path, shared_postgres: dict[str, Any], pg_roles: dict[str, str]
) -> None:
    alias = {
        "backend": "postgresql",
        "host": shared_postgres["host"],
        "name": shared_postgres["dbname"],
        "user": pg_roles["writer"],
        "search_path": [pg_roles["schema"]],
    }
    databases = configure(tmp_path, {"default": sqlite(tmp_path), "rw": alias})
    status, result = dbcheck_json(databases, "--database", "rw")
    db = by_alias(result)["rw"]
    assert (status, db["write_access"], ids(db)) == (0, None, [])


# ------------------------------------------------------------------------- MariaDB


def mariadb_admin(mariadb: dict[str, Any], *statements: str) -> None:
    import MySQLdb

    conn = MySQLdb.connect(**mariadb, connect_timeout=5, autocommit=True)
    try:
        cursor = conn.cursor()
        for statement in statements:
            cursor.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def mariadb_roles(shared_mariadb: dict[str, Any]) -> Iterator[dict[str, str]]:
    """A SELECT-only user, and a writer with grants to itself and to its default role."""
    tag = uuid.uuid4().hex[:8]
    names = {"table": f"dbconfig_ro_{tag}", "reader": f"ro_{tag}", "writer": f"rw_{tag}", "role": f"r_{tag}"}
    database, table, reader, writer, role = (
        shared_mariadb["database"],
        names["table"],
        names["reader"],
        names["writer"],
        names["role"],
    )
    mariadb_admin(
        shared_mariadb,
        f"CREATE TABLE `{table}` (id int, qty int)",
        f"CREATE USER '{reader}'@'%'",
        f"CREATE USER '{writer}'@'%'",
        f"CREATE ROLE `{role}`",
        f"GRANT SELECT ON `{database}`.* TO '{reader}'@'%'",
        f"GRANT SELECT, INSERT, UPDATE ON `{database}`.* TO '{writer}'@'%'",
        f"GRANT DELETE, UPDATE (qty) ON `{database}`.`{table}` TO `{role}`",
        f"GRANT `{role}` TO '{writer}'@'%'",
        f"SET DEFAULT ROLE `{role}` FOR '{writer}'@'%'",
    )
    try:
        yield names
    finally:
        mariadb_admin(
            shared_mariadb,
            f"DROP USER IF EXISTS '{reader}'@'%'",
            f"DROP USER IF EXISTS '{writer}'@'%'",
            f"DROP ROLE IF EXISTS `{role}`",
            f"DROP TABLE IF EXISTS `{table}`",
        )


def mariadb_check(tmp_path: Path, mariadb: dict[str, Any], user: str) -> dict[str, Any]:
    alias = {
        "backend": "mariadb",
        "host": mariadb["host"],
        "port": mariadb["port"],
        "name": mariadb["database"],
        "user": user,
        "read_only": True,
        "connect_timeout": "3s",
    }
    databases = configure(tmp_path, {"default": sqlite(tmp_path), "ro": alias})
    status, result = dbcheck_json(databases, "--database", "ro")
    db = by_alias(result)["ro"]
    assert (status, db["settings"]["read_only"]) == (0, {"expected": True, "actual": True, "ok": True})
    return db


@pytest.mark.mariadb
def test_mariadb_user_with_select_only_cannot_write_and_gets_no_warning(
    tmp_path: Path, shared_mariadb: dict[str, Any], mariadb_roles: dict[str, str]
) -> None:
    db = mariadb_check(tmp_path, shared_mariadb, mariadb_roles["reader"])
    assert db["write_access"] == {
        "role": f"{mariadb_roles['reader']}@%",
        "can_write": False,
        "via": [],
        "fix": [],
    }
    assert ids(db) == []


@pytest.mark.mariadb
def test_mariadb_user_that_can_write_is_a_warning_whose_revokes_make_it_read_only(
    tmp_path: Path, shared_mariadb: dict[str, Any], mariadb_roles: dict[str, str]
) -> None:
    database, table = shared_mariadb["database"], mariadb_roles["table"]
    writer, role = mariadb_roles["writer"], mariadb_roles["role"]
    db = mariadb_check(tmp_path, shared_mariadb, writer)
    via = [
        f"INSERT, UPDATE on `{database}`.* (granted to `{writer}`@`%`)",
        f"UPDATE (`qty`), DELETE on `{database}`.`{table}` (granted to `{role}`)",
    ]
    fix = [
        f"REVOKE INSERT, UPDATE ON `{database}`.* FROM `{writer}`@`%`",
        f"REVOKE UPDATE (`qty`), DELETE ON `{database}`.`{table}` FROM `{role}`",
    ]
    assert db["write_access"] == {"role": f"{writer}@%", "can_write": True, "via": via, "fix": fix}
    assert db["problems"] == [
        {
            "level": "warning",
            "id": "dbconfig.W104",
            "message": f'The role "{writer}@%" can write ({"; ".join(via)}): read-only rests on '
            "the session's setting alone, which SQL can lift.",
            "hint": hint(fix),
        }
    ]
    mariadb_admin(shared_mariadb, *fix)
    after = mariadb_check(tmp_path, shared_mariadb, writer)
    assert (after["write_access"]["can_write"], ids(after)) == (False, [])


@pytest.mark.mariadb
def test_mariadb_all_privileges_is_revoked_and_select_granted_back(
    tmp_path: Path, shared_mariadb: dict[str, Any], mariadb_roles: dict[str, str]
) -> None:
    database, reader = shared_mariadb["database"], mariadb_roles["reader"]
    mariadb_admin(shared_mariadb, f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{reader}'@'%'")
    db = mariadb_check(tmp_path, shared_mariadb, reader)
    fix = [
        f"REVOKE ALL PRIVILEGES ON `{database}`.* FROM `{reader}`@`%`",
        f"GRANT SELECT ON `{database}`.* TO `{reader}`@`%`",
    ]
    assert (db["write_access"]["fix"], ids(db)) == (fix, ["dbconfig.W104"])
    mariadb_admin(shared_mariadb, *fix)
    after = mariadb_check(tmp_path, shared_mariadb, reader)
    assert (after["write_access"]["can_write"], ids(after)) == (False, [])
