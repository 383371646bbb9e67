"""dbcheck's standby and lag report on a real MariaDB primary and its replica (CHANGE MASTER TO)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_dbconfig import build_databases
from tests.replication_servers import MariaDBPair
from tests.test_dbcheck import by_alias, dbcheck_json, ids

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

PRIMARY, REPLICA = "m_primary", "m_replica"


@pytest.fixture(scope="module")
def pair(mariadb_pair: MariaDBPair) -> Iterator[MariaDBPair]:
    """The pair with a table to write to on the primary, replicated."""
    mariadb_pair.primary.sql("CREATE TABLE ticks (id INT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6))")
    deadline = time.monotonic() + 20
    while not mariadb_pair.replica.sql("SHOW TABLES LIKE 'ticks'"):
        assert time.monotonic() < deadline, (
            f"the replica never got the table: {mariadb_pair.replica_status()}"
        )
        time.sleep(0.1)
    yield mariadb_pair


def configure(tmp_path: Path, pair: MariaDBPair, **replica: Any) -> dict[str, Any]:
    primary = pair.primary
    return build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                PRIMARY: {"url": primary.url().replace("mysql://", "mariadb://"), "connect_timeout": "3s"},
                # Everything but where it is comes from the primary: name, user, password.
                REPLICA: {
                    "host": pair.replica.host,
                    "port": pair.replica.port,
                    "replica_of": PRIMARY,
                    **replica,
                },
            }
        },
    )


def test_dbcheck_reports_the_replica_as_a_standby_and_its_lag(tmp_path: Path, pair: MariaDBPair) -> None:
    status, result = dbcheck_json(configure(tmp_path, pair, max_replica_lag="30s"))
    reports = by_alias(result)
    assert status == 0, result
    replica = reports[REPLICA]
    assert replica["vendor"] == "mariadb"
    assert replica["replication"] == {"primary": PRIMARY, "standby": True, "lag_s": 0.0, "max_lag_s": 30.0}
    assert replica["server"] == {"host": pair.replica.host, "port": pair.replica.port, "role": "standby"}
    assert replica["settings"]["read_only"] == {"expected": True, "actual": True, "ok": True}
    assert reports[PRIMARY]["replication"] is None
    assert reports[PRIMARY]["server"] == {
        "host": pair.primary.host,
        "port": pair.primary.port,
        "role": "primary",
    }


def test_a_replica_lagging_more_than_max_replica_lag_is_an_error(tmp_path: Path, pair: MariaDBPair) -> None:
    databases = configure(tmp_path, pair, max_replica_lag="1s")
    pair.set_delay(5)
    try:
        deadline = time.monotonic() + 30
        while True:
            pair.primary.sql("INSERT INTO ticks (at) VALUES (NOW(6))")
            lag = pair.replica_status().get("Seconds_Behind_Master")
            if lag is not None and int(lag) >= 2:
                break
            assert time.monotonic() < deadline, f"the replica never lagged: {pair.replica_status()}"
            time.sleep(0.2)
        status, result = dbcheck_json(databases, "--database", REPLICA)
    finally:
        pair.set_delay(0)
    replica = by_alias(result)[REPLICA]
    assert status == 1
    assert ids(replica) == ["dbconfig.E121"]
    assert replica["replication"]["standby"] is True and replica["replication"]["lag_s"] >= 2


def test_stopped_replication_is_reported_as_an_unknown_lag(tmp_path: Path, pair: MariaDBPair) -> None:
    databases = configure(tmp_path, pair)
    pair.replica.sql("STOP REPLICA SQL_THREAD", dbname="")
    try:
        status, result = dbcheck_json(databases, "--database", REPLICA)
    finally:
        pair.replica.sql("START REPLICA SQL_THREAD", dbname="")
    replica = by_alias(result)[REPLICA]
    assert status == 0  # a warning: the replica still answers, only its lag is unknown
    assert ids(replica) == ["dbconfig.W120"]
    assert replica["replication"] == {"primary": PRIMARY, "standby": True, "lag_s": None, "max_lag_s": None}


def test_a_replica_alias_on_the_writable_primary_is_an_error(tmp_path: Path, pair: MariaDBPair) -> None:
    primary = pair.primary
    databases = build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                PRIMARY: {"url": primary.url().replace("mysql://", "mariadb://")},
                REPLICA: {"host": primary.host, "port": primary.port, "replica_of": PRIMARY},
            }
        },
    )
    status, result = dbcheck_json(databases, "--database", REPLICA)
    replica = by_alias(result)[REPLICA]
    assert status == 1
    # On a writable primary the replica's user can write, read-only session or not: W104 too.
    assert ids(replica) == ["dbconfig.E120", "dbconfig.W104"]
    assert replica["replication"]["standby"] is False
    assert replica["server"]["role"] == "primary"


@contextlib.contextmanager
def lag_aware_reads(
    tmp_path: Path, pair: MariaDBPair, django_db_blocker: Any
) -> Iterator[tuple[Any, Callable[[], str], Callable[[Callable[[], bool], str], None]]]:
    """A router over the pair with max_replica_lag 1s; yields it, read() (the alias a read
    went to) and wait(condition, what)."""
    from django.db import connections

    from django_dbconfig.conf.config import last_config
    from django_dbconfig.routers import DatabaseRouter, _state
    from tests.apps.shop.models import Order
    from tests.test_router import registered

    pair.primary.sql(
        "CREATE TABLE IF NOT EXISTS shop_order (id BIGINT AUTO_INCREMENT PRIMARY KEY, reference VARCHAR(40) NOT NULL)"
    )
    deadline = time.monotonic() + 20
    while not pair.replica.sql("SHOW TABLES LIKE 'shop_order'"):
        assert time.monotonic() < deadline, f"the replica never got shop_order: {pair.replica_status()}"
        time.sleep(0.1)
    databases = configure(tmp_path, pair, max_replica_lag="1s", conn_max_age=0)
    config = last_config()
    assert config is not None

    def read() -> str:
        query = Order.objects.all()
        query.count()
        connections[query.db].close()
        return str(query.db)

    def wait(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    _state.set(None)
    with django_db_blocker.unblock(), registered(databases):
        router = DatabaseRouter(routes={"shop": PRIMARY}, replicas=config.replicas, databases=databases)
        try:
            with override_settings(DATABASE_ROUTERS=[router]):
                wait(lambda: read() == REPLICA, "reads to reach the replica")
                yield router, read, wait
        finally:
            router.stop_measuring()


def test_reads_leave_a_lagging_mariadb_replica_and_come_back(
    tmp_path: Path, pair: MariaDBPair, django_db_blocker: Any
) -> None:
    with lag_aware_reads(tmp_path, pair, django_db_blocker) as (router, read, wait):
        assert router.replica_lag(REPLICA) == 0.0
        pair.set_delay(5)
        try:

            def lagging() -> bool:
                pair.primary.sql("INSERT INTO ticks (at) VALUES (NOW(6))")
                return read() == PRIMARY

            wait(lagging, "reads to leave the lagging replica")
            assert (router.replica_lag(REPLICA) or 0) > 1.0
        finally:
            pair.set_delay(0)
        wait(lambda: read() == REPLICA, "reads to come back")


def test_a_replica_whose_replication_stopped_gets_no_reads_until_it_restarts(
    tmp_path: Path, pair: MariaDBPair, django_db_blocker: Any
) -> None:
    # The replica still answers, but its lag is unknown (Seconds_Behind_Master NULL):
    # docs/router.md says it gets no reads, as an unreachable one.
    with lag_aware_reads(tmp_path, pair, django_db_blocker) as (router, read, wait):
        pair.replica.sql("STOP REPLICA SQL_THREAD", dbname="")
        try:
            wait(lambda: read() == PRIMARY, "reads to leave the stopped replica")
            assert pair.replica_status().get("Seconds_Behind_Master") is None
            assert router.replica_lag(REPLICA) is None
            assert router._lags[REPLICA].error is None  # it answered: not an unreachable replica
            assert {read() for _ in range(5)} == {PRIMARY}
        finally:
            pair.replica.sql("START REPLICA SQL_THREAD", dbname="")
        wait(lambda: read() == REPLICA, "reads to come back once replication runs")
