"""Read-your-writes on a real PostgreSQL primary and a streaming replica 1.5 s behind it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections
from django.test import override_settings

from django_dbconfig import load_config
from django_dbconfig.routers import DatabaseRouter, ReadOnlyDatabaseError, _state, reset_pins
from tests.apps.shop.models import Order
from tests.servers import ReplicaPair
from tests.test_router import registered

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

PRIMARY, REPLICA = "rp_primary", "rp_replica"


@pytest.fixture(scope="module")
def routed(
    pg_replica_pair: ReplicaPair, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DatabaseRouter]:
    """shop -> rp_primary (replica rp_replica), shop_order created and replicated."""
    primary, replica = pg_replica_pair
    config = load_config(
        tmp_path_factory.mktemp("replica"),
        environ={},
        overrides={
            "databases": {
                PRIMARY: {"url": primary.url(), "conn_max_age": 0},
                REPLICA: {"url": replica.url(), "replica_of": PRIMARY, "conn_max_age": 0},
            }
        },
    )
    databases = config.databases()
    router = DatabaseRouter(routes={"shop": PRIMARY}, replicas=config.replicas, databases=databases)
    with django_db_blocker.unblock(), registered(databases), override_settings(DATABASE_ROUTERS=[router]):
        with connections[PRIMARY].schema_editor() as editor:
            editor.create_model(Order)
        try:
            deadline = time.monotonic() + 15
            while not replica.psql("SELECT to_regclass('shop_order')")[0][0]:
                assert time.monotonic() < deadline, "the replica never received shop_order"
                time.sleep(0.1)
            yield router
        finally:
            connections[PRIMARY].close()
            primary.psql("DROP TABLE IF EXISTS shop_order")


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    _state.set(None)
    yield
    _state.set(None)


def unique() -> str:
    return uuid.uuid4().hex[:12]


def close_thread_connections() -> None:
    for alias in (PRIMARY, REPLICA):
        connections[alias].close()


def test_the_two_aliases_are_a_primary_and_its_replica(routed: DatabaseRouter) -> None:
    def in_recovery(alias: str) -> bool:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            return bool(cursor.fetchone()[0])

    assert [in_recovery(PRIMARY), in_recovery(REPLICA)] == [False, True]


def test_read_after_write_misses_on_the_replica_and_the_pin_sees_it(
    routed: DatabaseRouter, pg_replica_pair: ReplicaPair
) -> None:
    reference = unique()
    Order.objects.create(reference=reference)
    # Without the pin: the replica has not applied the write yet.
    assert Order.objects.using(REPLICA).filter(reference=reference).exists() is False
    # With the router: this request wrote, so its reads go to the primary.
    pinned = Order.objects.filter(reference=reference)
    assert [pinned.db, pinned.exists()] == [PRIMARY, True]

    reset_pins()  # the request ends
    later = Order.objects.filter(reference=reference)
    assert later.db == REPLICA
    deadline = time.monotonic() + 10
    while not later.exists():  # ... and the replica catches up after its apply delay
        assert time.monotonic() < deadline, "the replica never applied the write"
        time.sleep(0.1)


def test_threads_writing_and_reading_each_see_only_their_own_pin(routed: DatabaseRouter) -> None:
    references = [unique() for _ in range(3)]
    written = [threading.Event() for _ in references]
    # All six tasks run at once, so each has a thread of its own: a pool thread reused after a
    # writer would carry that writer's pin into a reader.
    together = threading.Barrier(6, timeout=10)

    def writer(index: int) -> tuple[str, bool]:
        together.wait()
        try:
            Order.objects.create(reference=references[index])
            written[index].set()
            query = Order.objects.filter(reference=references[index])
            return query.db, query.exists()
        finally:
            close_thread_connections()

    def reader(index: int) -> tuple[str, bool]:
        together.wait()
        try:
            assert written[index].wait(10)
            query = Order.objects.filter(reference=references[index])
            return query.db, query.exists()
        finally:
            close_thread_connections()

    with ThreadPoolExecutor(max_workers=6) as pool:
        writers = [pool.submit(writer, i) for i in range(3)]
        readers = [pool.submit(reader, i) for i in range(3)]
        results = [f.result(timeout=30) for f in writers + readers]
    assert results == [(PRIMARY, True)] * 3 + [(REPLICA, False)] * 3
    assert Order.objects.all().db == REPLICA  # the test's own thread wrote nothing


def test_asyncio_tasks_writing_and_reading_each_see_only_their_own_pin(routed: DatabaseRouter) -> None:
    from asgiref.sync import sync_to_async

    reference = unique()

    async def writer(written: asyncio.Event) -> tuple[str, bool]:
        await Order.objects.acreate(reference=reference)
        written.set()
        query = Order.objects.filter(reference=reference)
        return query.db, await query.aexists()

    async def reader(written: asyncio.Event) -> tuple[str, bool]:
        await written.wait()
        query = Order.objects.filter(reference=reference)
        return query.db, await query.aexists()

    async def main() -> list[tuple[str, bool]]:
        written = asyncio.Event()
        try:
            results = list(await asyncio.gather(writer(written), reader(written)))
            parent = Order.objects.filter(reference=reference)
            return [*results, (parent.db, await parent.aexists())]
        finally:
            await sync_to_async(close_thread_connections)()

    assert asyncio.run(main()) == [(PRIMARY, True), (REPLICA, False), (REPLICA, False)]


def test_write_sent_to_the_replica_is_refused_naming_the_alias(routed: DatabaseRouter) -> None:
    with pytest.raises(ReadOnlyDatabaseError) as caught:
        Order.objects.using(REPLICA).create(reference=unique())
    assert str(caught.value) == (
        "database alias 'rp_replica' is a read replica of 'rp_primary': the server refused this "
        "write (cannot execute INSERT in a read-only transaction). "
        "Writes go to 'rp_primary' (let the router choose, or use .using('rp_primary'))."
    )
    assert caught.value.__cause__ is not None
    assert getattr(caught.value.__cause__.__cause__, "sqlstate", None) == "25006"
    assert "app-secret-pw" not in str(caught.value)
