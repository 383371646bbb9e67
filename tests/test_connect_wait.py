"""A new connection waits, within connect_timeout, for a server that can take its session.

During a switchover there is a moment with no primary. A write alias (host list with
`target_session_attrs=read-write`) that connects then is told "session is read-only" by
every server; it tries again until connect_timeout has passed rather than failing the
request at once. A server that refuses connections still fails at once.
(tests/test_patroni.py measures the effect through a real Patroni switchover.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError

from django_dbconfig import build_databases
from tests.conftest import django_connection, query_one
from tests.servers import PostgresServer, ReplicaPair, free_port, serving, start_replica

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]


def writer(tmp_path: Path, server: Any, ports: list[int], connect_timeout: str) -> dict[str, Any]:
    """A write alias over a host list of *ports*, with the app role of *server*."""
    return build_databases(
        tmp_path,
        environ={"DATABASE_URL": server.url()},
        overrides={
            "databases": {
                "default": {
                    "host": ["127.0.0.1"] * len(ports),
                    "port": ports,
                    "target_session_attrs": "read-write",
                    "connect_timeout": connect_timeout,
                }
            }
        },
    )["default"]


def test_a_writer_waits_for_a_primary_until_connect_timeout(
    pg_replica_pair: ReplicaPair, tmp_path: Path
) -> None:
    settings = writer(tmp_path, pg_replica_pair.replica, [pg_replica_pair.replica.port], "1s")
    started = time.monotonic()
    with pytest.raises(OperationalError, match="session is read-only"):
        with django_connection(settings):
            pass
    waited = time.monotonic() - started
    assert 0.9 <= waited < 10, waited


def test_a_refused_connection_fails_at_once(pg_replica_pair: ReplicaPair, tmp_path: Path) -> None:
    settings = writer(tmp_path, pg_replica_pair.replica, [free_port()], "5s")
    started = time.monotonic()
    with pytest.raises(OperationalError, match="refused"):
        with django_connection(settings):
            pass
    assert time.monotonic() - started < 2.5


def test_a_writer_connecting_during_a_promotion_reaches_the_new_primary(tmp_path: Path) -> None:
    def make() -> ReplicaPair:
        primary = PostgresServer().__enter__()
        try:
            return ReplicaPair(primary, start_replica(primary, apply_delay_ms=0))
        except BaseException:
            primary.cleanup()
            raise

    with serving("throwaway PostgreSQL primary/standby", make) as pair:
        pair.primary.stop()
        settings = writer(tmp_path, pair.replica, [pair.replica.port], "20s")
        promotion = threading.Timer(1.0, lambda: pair.replica.psql("SELECT pg_promote()", dbname="postgres"))
        started = time.monotonic()
        promotion.start()
        try:
            with django_connection(settings) as connection:
                assert query_one(connection, "SELECT pg_is_in_recovery()") is False
        finally:
            promotion.join()
        # It waited for the promotion (about 1 s), not for the whole connect_timeout.
        assert 0.9 <= time.monotonic() - started < 20
