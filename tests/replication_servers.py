"""Throwaway replication set-ups: PostgreSQL standbys with a lag set on demand, a MariaDB replica.

Registered in tests/conftest.py's ``pytest_plugins``. Built on tests/servers.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from tests.servers import (
    MariaDBServer,
    PostgresReplica,
    PostgresServer,
    ReplicaPair,
    ServerUnavailable,
    TLSMaterial,
    serving,
    start_replica,
)

REPLICATION_USER = "repl"
REPLICATION_PASSWORD = "repl-secret-pw"


def set_apply_delay(replica: PostgresReplica, ms: int) -> None:
    """Change the standby's recovery_min_apply_delay at once (a reload, no restart)."""
    replica.psql(f"ALTER SYSTEM SET recovery_min_apply_delay = '{int(ms)}ms'", dbname="postgres")
    replica.psql("SELECT pg_reload_conf()", dbname="postgres")
    deadline = time.monotonic() + 10
    while replica.psql("SHOW recovery_min_apply_delay", dbname="postgres")[0][0] != _shown(ms):
        if time.monotonic() > deadline:
            raise AssertionError("the standby did not take the new recovery_min_apply_delay")
        time.sleep(0.05)


def _shown(ms: int) -> str:
    if ms == 0:
        return "0"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def standby_lag_s(replica: PostgresReplica) -> float:
    """The standby's lag as the server computes it: what dbcheck and the router should find."""
    rows = replica.psql(
        "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
        "ELSE EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()) END",
        dbname="postgres",
    )
    return float(rows[0][0] or 0)


@pytest.fixture(scope="session")
def pg_tls_standby(pg_tls_server: PostgresServer) -> Iterator[PostgresReplica]:
    """A streaming standby of the session's TLS server (same certificate authority, no delay)."""
    with serving(
        "throwaway PostgreSQL standby (TLS)", lambda: start_replica(pg_tls_server, apply_delay_ms=0)
    ) as standby:
        yield standby


@pytest.fixture(scope="module")
def pg_lag_pair() -> Iterator[ReplicaPair]:
    """A primary and a standby whose apply delay the tests change (set_apply_delay); starts at 0."""

    def make() -> ReplicaPair:
        primary = PostgresServer().__enter__()
        try:
            return ReplicaPair(primary, start_replica(primary, apply_delay_ms=0))
        except BaseException:
            primary.cleanup()
            raise

    with serving("throwaway PostgreSQL primary/standby", make) as pair:
        yield pair
        with contextlib.suppress(Exception):
            set_apply_delay(pair.replica, 0)


class MariaDBPair(NamedTuple):
    """A MariaDB primary (binary log on) and a replica of it (CHANGE MASTER TO)."""

    primary: MariaDBServer
    replica: MariaDBServer

    def cleanup(self) -> None:
        self.replica.cleanup()
        self.primary.cleanup()

    def replica_status(self) -> dict[str, Any]:
        connection = self.replica._root_connect()
        try:
            cursor = connection.cursor()
            cursor.execute("SHOW REPLICA STATUS")
            names = [column[0] for column in cursor.description]
            row = cursor.fetchone()
            return dict(zip(names, row, strict=True)) if row else {}
        finally:
            connection.close()

    def set_delay(self, seconds: int) -> None:
        """MASTER_DELAY: the replica applies each event that many seconds after the primary."""
        self.replica.sql("STOP REPLICA", dbname="")
        self.replica.sql(f"CHANGE MASTER TO MASTER_DELAY = {int(seconds)}", dbname="")
        self.replica.sql("START REPLICA", dbname="")


def start_mariadb_pair() -> MariaDBPair:
    """Start both servers and make the second replicate the first from its current position."""
    primary = MariaDBServer(extra_args=["--log-bin=primary-bin", "--server-id=1", "--binlog-format=ROW"])
    replica: MariaDBServer | None = None
    try:
        primary.start()
        replica = MariaDBServer(extra_args=["--server-id=2", "--read-only=ON"])
        replica.start()
        primary.sql(f"CREATE USER '{REPLICATION_USER}'@'%' IDENTIFIED BY '{REPLICATION_PASSWORD}'", dbname="")
        primary.sql(f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'%'", dbname="")
        log_file, position = primary.sql("SHOW MASTER STATUS", dbname="")[0][:2]
        replica.sql(
            f"CHANGE MASTER TO MASTER_HOST = '{primary.host}', MASTER_PORT = {primary.port}, "
            f"MASTER_USER = '{REPLICATION_USER}', MASTER_PASSWORD = '{REPLICATION_PASSWORD}', "
            f"MASTER_LOG_FILE = '{log_file}', MASTER_LOG_POS = {int(position)}",
            dbname="",
        )
        replica.sql("START REPLICA", dbname="")
        # The app user reads the replica status, as dbcheck does.
        for host in ("%", "localhost"):
            replica.sql(f"GRANT SLAVE MONITOR ON *.* TO '{replica.user}'@'{host}'", dbname="")
        pair = MariaDBPair(primary, replica)
        deadline = time.monotonic() + 30
        while pair.replica_status().get("Slave_IO_Running") != "Yes":
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"the MariaDB replica never connected: {pair.replica_status()}")
            time.sleep(0.1)
        return pair
    except BaseException:
        if replica is not None:
            replica.cleanup()
        primary.cleanup()
        raise


@pytest.fixture(scope="module")
def mariadb_pair() -> Iterator[MariaDBPair]:
    with serving("throwaway MariaDB primary/replica", start_mariadb_pair) as pair:
        yield pair


__all__ = ["MariaDBPair", "TLSMaterial", "set_apply_delay", "standby_lag_s"]
