"""Galera's keys without a cluster: how wsrep_sync_wait is rendered and refused, and that the
machine's plain MariaDB (no wsrep) reports nothing of a cluster. The cluster itself is
tested in tests/test_galera.py (marked galera: scripts/galera-suite.sh)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import DbConfigError, build_databases
from django_dbconfig.backends.mysql.probe import expected_from_settings
from tests.conftest import django_connection, query_one
from tests.test_dbcheck import configure, dbcheck_json, ids

MARIADB = {"backend": "mariadb", "host": "db.internal", "name": "app", "user": "app"}


def build(tmp_path: Path, alias: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    return build_databases(tmp_path, environ=environ or {}, overrides={"databases": {"default": alias}})


def refusal(tmp_path: Path, alias: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(DbConfigError) as info:
        build(tmp_path, alias, environ)
    return str(info.value)


def test_causal_reads_are_sent_in_the_init_command(tmp_path: Path) -> None:
    options = build(tmp_path, {**MARIADB, "wsrep_sync_wait": 1, "statement_timeout": "2s"})["default"][
        "OPTIONS"
    ]
    assert options["init_command"] == "SET SESSION max_statement_time=2, wsrep_sync_wait=1"


def test_sync_wait_on_mysql_uses_the_same_variable(tmp_path: Path) -> None:
    options = build(tmp_path, {**MARIADB, "backend": "mysql", "wsrep_sync_wait": 3})["default"]["OPTIONS"]
    assert options["init_command"] == "SET SESSION wsrep_sync_wait=3"


def test_sync_wait_zero_is_sent_to_turn_causal_reads_off(tmp_path: Path) -> None:
    # 0 overrides a server whose global wsrep_sync_wait is on.
    options = build(tmp_path, {**MARIADB, "wsrep_sync_wait": 0})["default"]["OPTIONS"]
    assert options["init_command"] == "SET SESSION wsrep_sync_wait=0"


def test_galera_cluster_size_changes_nothing_in_the_entry(tmp_path: Path) -> None:
    with_size = build(tmp_path, {**MARIADB, "galera_cluster_size": 3})["default"]
    without = build(tmp_path, MARIADB)["default"]
    assert with_size == without


def test_sync_wait_comes_from_its_variable(tmp_path: Path) -> None:
    environ = {"DATABASE_URL": "mariadb://app@db.internal/app", "DBCONFIG_DEFAULT_WSREP_SYNC_WAIT": "1"}
    databases = build_databases(tmp_path, environ=environ)
    assert databases["default"]["OPTIONS"]["init_command"] == "SET SESSION wsrep_sync_wait=1"


def test_a_replica_inherits_causal_reads(tmp_path: Path) -> None:
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": {**MARIADB, "wsrep_sync_wait": 1},
                "replica": {"host": "db-b.internal", "replica_of": "default"},
            }
        },
    )
    assert databases["replica"]["OPTIONS"]["init_command"] == "SET SESSION tx_read_only=1, wsrep_sync_wait=1"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            16,
            "expected Galera's mask from 0 to 15 (1: reads wait for the writes the "
            "cluster committed before them), got 16",
        ),
        (
            -1,
            "expected Galera's mask from 0 to 15 (1: reads wait for the writes the "
            "cluster committed before them), got -1",
        ),
        (True, "expected a whole number, got a boolean"),
        ("1", "expected a whole number, got a string"),
    ],
)
def test_bad_sync_wait_is_refused_with_the_valid_range(tmp_path: Path, value: object, problem: str) -> None:
    message = refusal(tmp_path, {**MARIADB, "wsrep_sync_wait": value})
    assert message == (
        f'override: databases.default.wsrep_sync_wait (alias "default"): wsrep_sync_wait: {problem}.'
    )


def test_bad_cluster_size_is_refused(tmp_path: Path) -> None:
    message = refusal(tmp_path, {**MARIADB, "galera_cluster_size": 0})
    assert message == (
        'override: databases.default.galera_cluster_size (alias "default"): galera_cluster_size: expected the number of '
        "nodes of the Galera cluster (1 or more), got 0."
    )


def test_causal_reads_are_refused_on_postgresql(tmp_path: Path) -> None:
    message = refusal(tmp_path, {"backend": "postgresql", "name": "app", "wsrep_sync_wait": 1})
    assert message == (
        'override: databases.default.wsrep_sync_wait (alias "default"): wsrep_sync_wait is not supported '
        "on PostgreSQL. It asks a MariaDB/MySQL Galera node for causal reads. On PostgreSQL, reads that "
        "must see every committed write go to the primary (or the standbys run synchronous_commit = "
        'remote_apply); remove it for this alias. The backend "postgresql" comes from override: '
        "databases.default.backend."
    )


def test_galera_keys_are_refused_on_sqlite(tmp_path: Path) -> None:
    message = refusal(
        tmp_path,
        {"backend": "sqlite", "name": "db.sqlite3", "galera_cluster_size": 3, "wsrep_sync_wait": 1},
    )
    assert (
        "wsrep_sync_wait is not supported on SQLite. SQLite is a local file, not a node of a Galera"
        in message
    )
    assert "galera_cluster_size is not supported on SQLite. SQLite is a local file, not a node" in message


# ------------------------------------------------------------------ the machine's MariaDB: no Galera


def shared_alias(server: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "backend": "mariadb",
        "host": server["host"],
        "port": server["port"],
        "name": server["database"],
        "user": server["user"],
        "connect_timeout": "3s",
        **extra,
    }


@pytest.mark.mariadb
def test_a_plain_mariadb_reports_no_cluster(tmp_path: Path, shared_mariadb: dict[str, Any]) -> None:
    databases = configure(tmp_path, {"default": shared_alias(shared_mariadb)})
    status, result = dbcheck_json(databases)
    (default,) = result["databases"]
    assert (status, default["cluster"], ids(default)) == (0, None, [])


@pytest.mark.mariadb
def test_galera_keys_on_a_plain_mariadb_are_sent_and_warned(
    tmp_path: Path, shared_mariadb: dict[str, Any]
) -> None:
    databases = configure(
        tmp_path, {"default": shared_alias(shared_mariadb, wsrep_sync_wait=1, galera_cluster_size=3)}
    )
    with django_connection(databases["default"]) as connection:
        assert query_one(connection, "SELECT @@session.wsrep_sync_wait") == 1
    status, result = dbcheck_json(databases)
    (default,) = result["databases"]
    assert status == 0
    assert default["cluster"] is None
    assert default["settings"]["wsrep_sync_wait"] == {"expected": "1", "actual": "1", "ok": True}
    assert ids(default) == ["dbconfig.W171"]


def test_an_init_command_setting_sync_wait_too_is_refused(tmp_path: Path) -> None:
    message = refusal(
        tmp_path, {**MARIADB, "wsrep_sync_wait": 1, "options": {"init_command": "SET wsrep_sync_wait = 0"}}
    )
    assert "options.init_command sets wsrep_sync_wait, which the keys set too" in message
    assert "wsrep_sync_wait (override: databases.default.wsrep_sync_wait)" in message


def test_sync_wait_of_a_hand_written_init_command_is_read_back() -> None:
    entry = {"OPTIONS": {"init_command": "SET SESSION max_statement_time=2, wsrep_sync_wait=1"}}
    expected = expected_from_settings(entry)
    assert (expected.sync_wait, expected.durations) == (1, {"statement_timeout": 2000})
