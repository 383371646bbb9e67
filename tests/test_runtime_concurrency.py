"""32 threads and 32 asyncio tasks, each with its own runtime database, at the same time.

Each worker has its own schema on a throwaway PostgreSQL server (max_connections
200), writes and reads rows through the ORM while every other worker does the
same, and must see only its own rows. When all are done, the server's session
count is back to what it was before, within seconds, with the garbage collector
switched off: removal closes the sessions, nothing waits for a collection.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from django_dbconfig import runtime_database
from tests.apps.shop.models import Order
from tests.servers import PostgresServer

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

THREADS = 32
TASKS = 32
ROWS = 5
WAIT = 60.0


def client_sessions(server: PostgresServer) -> int:
    rows = server.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "AND pid <> pg_backend_pid()",
        dbname="postgres",
    )
    return int(rows[0][0])


def settled_sessions(server: PostgresServer) -> int:
    """The session count once the setup's own sessions have finished ending (it reads the same thrice)."""
    counts = [client_sessions(server)]
    deadline = time.monotonic() + 10
    while (len(counts) < 3 or len(set(counts[-3:])) > 1) and time.monotonic() < deadline:
        time.sleep(0.1)
        counts.append(client_sessions(server))
    return counts[-1]


def test_threads_and_tasks_with_their_own_runtime_database_never_meet(
    pg_server_factory: Any, built_config: Any, django_db_blocker: Any
) -> None:
    server: PostgresServer = pg_server_factory(settings={"max_connections": "200"})
    workers = [f"thread_{n:02d}" for n in range(THREADS)] + [f"task_{n:02d}" for n in range(TASKS)]
    server.psql(
        "; ".join(
            f"CREATE SCHEMA {name} AUTHORIZATION app; "
            f"CREATE TABLE {name}.shop_order (id bigserial PRIMARY KEY, reference varchar(40) NOT NULL); "
            f"ALTER TABLE {name}.shop_order OWNER TO app"
            for name in workers
        ),
        dbname="app",
    )
    built_config({"databases": {"default": {"url": server.url(), "sslmode": "disable", "conn_max_age": 600}}})

    connected = threading.Barrier(len(workers) + 1, timeout=WAIT)
    counted = threading.Barrier(len(workers) + 1, timeout=WAIT)
    seen: dict[str, set[str]] = {}
    errors: list[BaseException] = []

    def work(alias: str, name: str) -> set[str]:
        """Write this worker's rows, wait for everyone, then read and update at the same time."""
        for n in range(ROWS):
            Order.objects.using(alias).create(reference=f"{name}-{n}")
        connected.wait()
        counted.wait()
        with transaction.atomic(using=alias):
            Order.objects.using(alias).filter(reference=f"{name}-0").update(reference=f"{name}-first")
        return set(Order.objects.using(alias).values_list("reference", flat=True))

    def in_a_thread(name: str) -> None:
        try:
            with runtime_database({"search_path": [name]}, like="default") as alias:
                seen[name] = work(alias, name)
        except BaseException as exc:
            errors.append(exc)
            connected.abort()
            counted.abort()

    executor = ThreadPoolExecutor(max_workers=TASKS, thread_name_prefix="sync_to_async")

    async def in_a_task(name: str) -> None:
        # The alias is added and removed in the event loop's thread; the queries run in the
        # executor's threads, which live on after the task: removal must close their sessions.
        with runtime_database({"search_path": [name]}, like="default") as alias:
            seen[name] = await sync_to_async(work, thread_sensitive=False, executor=executor)(alias, name)

    async def all_tasks() -> None:
        results = await asyncio.gather(
            *(in_a_task(name) for name in workers[THREADS:]), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                errors.append(result)
                connected.abort()
                counted.abort()

    before = settled_sessions(server)
    gc.disable()
    try:
        with django_db_blocker.unblock():
            threads = [threading.Thread(target=in_a_thread, args=(name,)) for name in workers[:THREADS]]
            threads.append(threading.Thread(target=asyncio.run, args=(all_tasks(),), name="event-loop"))
            for thread in threads:
                thread.start()
            try:
                connected.wait()
                peak = client_sessions(server)
            finally:
                counted.wait()
            for thread in threads:
                thread.join(WAIT)
        finished = time.monotonic()
        deadline = finished + 10
        after = client_sessions(server)
        while after != before and time.monotonic() < deadline:
            time.sleep(0.05)
            after = client_sessions(server)
        settled_s = time.monotonic() - finished
    finally:
        gc.enable()
        executor.shutdown(wait=True)

    print(
        f"\nruntime databases: {THREADS} threads + {TASKS} tasks; sessions before {before}, "
        f"peak {peak}, after {after} ({settled_s:.2f} s after the last worker finished)"
    )
    assert errors == []
    assert seen == {name: {f"{name}-first", *(f"{name}-{n}" for n in range(1, ROWS))} for name in workers}
    assert peak == before + len(workers)
    assert after == before
