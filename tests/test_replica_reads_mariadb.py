"""Replica reads that are correct on a real MariaDB primary and replica: transactions read the
primary, one request reads one server, and a replica stopped under request load costs no request."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from django_dbconfig import load_config
from django_dbconfig.routers import DatabaseRouter, _state
from tests.apps.shop.models import Order
from tests.replication_servers import MariaDBPair
from tests.test_replica_reads_postgresql import Outcome, a_request, close_connections, routing, wait_for

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]
logger = logging.getLogger(__name__)

PRIMARY, REPLICA = "cm_primary", "cm_replica"


@pytest.fixture(scope="module")
def pair(mariadb_pair: MariaDBPair) -> Iterator[MariaDBPair]:
    """shop_order on the primary, and on the replica once replicated."""
    mariadb_pair.primary.sql(
        "CREATE TABLE shop_order (id BIGINT AUTO_INCREMENT PRIMARY KEY, reference VARCHAR(40) NOT NULL)"
    )
    wait_for(lambda: bool(mariadb_pair.replica.sql("SHOW TABLES LIKE 'shop_order'")), "shop_order")
    yield mariadb_pair


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    _state.set(None)
    yield
    _state.set(None)


@contextlib.contextmanager
def routed(
    tmp_path: Path, pair: MariaDBPair, django_db_blocker: Any, **replica: Any
) -> Iterator[DatabaseRouter]:
    primary = pair.primary
    config = load_config(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                PRIMARY: {"url": primary.url().replace("mysql://", "mariadb://"), "connect_timeout": "2s"},
                REPLICA: {
                    "host": pair.replica.host,
                    "port": pair.replica.port,
                    "replica_of": PRIMARY,
                    **replica,
                },
            }
        },
    )
    with routing(config, PRIMARY, django_db_blocker) as router:
        yield router


def server_of_read() -> int:
    """The @@server_id of the server that answered a routed read (1: the primary, 2: the replica)."""
    rows = list(Order.objects.raw("SELECT 1 AS id, CAST(@@server_id AS CHAR) AS reference"))
    return int(rows[0].reference)


def test_a_read_inside_atomic_goes_to_the_primary_before_any_write(
    tmp_path: Path, pair: MariaDBPair, django_db_blocker: Any
) -> None:
    with routed(tmp_path, pair, django_db_blocker), contextlib.ExitStack() as stack:
        pair.set_delay(3)
        stack.callback(pair.set_delay, 0)
        reference = uuid.uuid4().hex[:12]
        pair.primary.sql(f"INSERT INTO shop_order (reference) VALUES ('{reference}')")
        with a_request():
            found = Order.objects.filter(reference=reference).exists
            assert [server_of_read(), found()] == [2, False]
            with transaction.atomic(using=PRIMARY):
                assert [server_of_read(), found()] == [1, True]
            assert [server_of_read(), found()] == [2, False]


def test_one_request_reads_from_one_connection_of_the_replica(
    tmp_path: Path, pair: MariaDBPair, django_db_blocker: Any
) -> None:
    with routed(tmp_path, pair, django_db_blocker), a_request():
        sessions = {
            int(
                next(
                    iter(Order.objects.raw("SELECT 1 AS id, CAST(CONNECTION_ID() AS CHAR) AS reference"))
                ).reference
            )
            for _ in range(5)
        }
        assert [server_of_read(), len(sessions)] == [2, 1]


def load(stop: threading.Event, outcomes: list[Outcome], started: float) -> None:
    try:
        while not stop.is_set():
            begun = time.monotonic()
            try:
                with a_request():
                    server: int | None = server_of_read()
            except Exception as exc:
                logger.warning("a request failed: %s", type(exc).__name__)
                server = None
            outcomes.append(Outcome(begun - started, server, time.monotonic() - begun))
            time.sleep(0.01)
    finally:
        close_connections((PRIMARY, REPLICA))


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_replica_stopped_under_request_load_fails_no_request_and_gets_reads_again(
    tmp_path: Path, pair: MariaDBPair, django_db_blocker: Any, mode: str
) -> None:
    """4 threads make requests while the replica stops (SIGTERM, or SIGKILL) for 4 s."""
    outcomes: list[Outcome] = []
    stop = threading.Event()
    with routed(tmp_path, pair, django_db_blocker, conn_max_age=60, conn_health_checks=True) as router:
        started = time.monotonic()
        workers = [threading.Thread(target=load, args=(stop, outcomes, started)) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            wait_for(lambda: any(o.port == 2 for o in outcomes[-8:]), "reads on the replica")
            time.sleep(0.5)
            pair.replica.stop(mode)  # returns once the process has exited
            stopped_at = time.monotonic() - started
            time.sleep(4)
            pair.replica.start()
            up_at = time.monotonic() - started
            back = wait_for(
                lambda: any(o.port == 2 and o.at > up_at for o in list(outcomes)),
                "reads to come back to the replica",
                timeout=30,
            )
        finally:
            stop.set()
            for worker in workers:
                worker.join(60)
            if pair.replica.process is None:
                pair.replica.start()
        assert REPLICA not in router._dead
    during = [o for o in outcomes if stopped_at <= o.at < up_at]
    in_flight = [o for o in outcomes if o.port is None and o.at < stopped_at]
    failed = [o for o in outcomes if o.port is None and o.at >= stopped_at]
    logger.warning(
        "MariaDB replica stopped (%s): %d requests in all, %d begun while it was down, %d of those failed, "
        "%d served by the primary; %d failed in flight as it stopped; reads back on the replica %.2f s after it was up",
        mode,
        len(outcomes),
        len(during),
        len(failed),
        sum(1 for o in during if o.port == 1),
        len(in_flight),
        back,
    )
    assert during, "no request ran while the replica was down"
    assert len(in_flight) <= 4
    assert failed == []
    assert {o.port for o in during} <= {1, 2}
