"""Under ASGI the defaults pool the connections (bounded, reused); under WSGI they stay persistent.

A real ASGI server (uvicorn, one worker) serves a project whose DATABASES come from
build_databases(), against a throwaway PostgreSQL with max_connections = 30, loaded by
ab. The served process runs with the garbage collector off, so any connection that
closes is closed by the code, not by a collection. The same project under gunicorn
with threads keeps one persistent connection per thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async

from django_dbconfig.backends.postgresql.settings import ASGI_POOL, asgi_pool_missing
from tests.asgi_load import serve_and_load, write_project
from tests.helpers import needs_django_pool
from tests.servers import PostgresServer

MAX_CONNECTIONS = 30
CONCURRENCY = 20
REQUESTS = 400


@pytest.fixture(scope="module")
def small_postgres() -> Any:
    from tests.servers import serving

    with serving(
        "throwaway PostgreSQL (max_connections 30)",
        lambda: PostgresServer(settings={"max_connections": str(MAX_CONNECTIONS)}).__enter__(),
    ) as server:
        yield server


@pytest.mark.slow
@pytest.mark.postgresql
@pytest.mark.parametrize("view", ["", "async"], ids=["sync view", "async view"])
def test_asgi_defaults_pool_connections_within_the_pools_bound(
    small_postgres: PostgresServer, tmp_path: Path, view: str
) -> None:
    root = write_project(
        tmp_path, dbconfig={"databases": {"default": {"url": small_postgres.url()}}}, databases=None
    )
    result = serve_and_load(
        small_postgres, root, label="defaults", requests=REQUESTS, concurrency=CONCURRENCY, path=view
    )
    print(result)
    assert (result.complete, result.failed, result.non_2xx) == (REQUESTS, 0, 0)
    if asgi_pool_missing((django.VERSION[0], django.VERSION[1])) is not None:
        # No pool to be had (Django 4.2): one connection per request in flight, closed
        # just after its response is sent (ab's next request may overlap it briefly).
        assert 1 <= result.peak <= CONCURRENCY + 3
        assert result.remaining == 0, result.after
        return
    # The default ASGI pool: at most max_size connections, reused request after request
    # (a session per request would show hundreds), kept open for the next requests.
    bound = ASGI_POOL["max_size"]
    assert 1 <= result.peak <= bound
    assert 1 <= result.sessions <= bound
    assert result.remaining <= bound, result.after


@pytest.mark.slow
@pytest.mark.postgresql
def test_wsgi_defaults_keep_one_persistent_connection_per_thread(
    small_postgres: PostgresServer, tmp_path: Path
) -> None:
    threads = 4
    root = write_project(
        tmp_path, dbconfig={"databases": {"default": {"url": small_postgres.url()}}}, databases=None
    )
    result = serve_and_load(
        small_postgres, root, label="wsgi", requests=REQUESTS, concurrency=threads, wsgi_threads=threads
    )
    print(result)
    assert (result.complete, result.failed, result.non_2xx) == (REQUESTS, 0, 0)
    # No pool under WSGI: each gunicorn thread opened one connection and kept it.
    assert 1 <= result.sessions <= threads
    assert 1 <= result.remaining <= threads, result.after


@pytest.mark.postgresql
def test_wsgi_requests_keep_their_persistent_connection(shared_postgres: dict[str, Any]) -> None:
    from django.core import signals
    from django.core.handlers.wsgi import WSGIHandler

    from django_dbconfig import load_config
    from tests.conftest import django_connection, query_one

    url = "postgresql://{user}@{host}:{port}/{dbname}".format(**shared_postgres)
    settings = load_config(environ={}, overrides={"databases": {"default": {"url": url}}}).databases()
    with django_connection(dict(settings["default"])) as connection:
        for _ in range(3):
            signals.request_started.send(sender=WSGIHandler, environ={})
            backend = query_one(connection, "SELECT pg_backend_pid()")
            signals.request_finished.send(sender=WSGIHandler)
            assert connection.connection is not None
        # The same server session served every request.
        assert query_one(connection, "SELECT pg_backend_pid()") == backend


@needs_django_pool
@pytest.mark.slow
@pytest.mark.postgresql
def test_asgi_with_pool_holds_only_the_pools_connections(
    small_postgres: PostgresServer, tmp_path: Path
) -> None:
    pool = {"min_size": 2, "max_size": 4}
    dbconfig = {"databases": {"default": {"url": small_postgres.url(), "pool": pool}}}
    root = write_project(tmp_path, dbconfig=dbconfig, databases=None)
    result = serve_and_load(small_postgres, root, label="pool", requests=REQUESTS, concurrency=CONCURRENCY)
    print(result)
    assert (result.complete, result.failed, result.non_2xx) == (REQUESTS, 0, 0)
    assert 1 <= result.peak <= pool["max_size"]
    # Connections go back to the pool at each request's end; idle ones above
    # min_size are closed by the pool only after its max_idle (10 min by default).
    assert result.remaining <= pool["max_size"], result.after


@pytest.mark.postgresql
@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django has connection pools from 5.1")
def test_a_mixed_process_never_shares_a_connection_between_pooled_and_persistent_uses(
    pg_plain_server: PostgresServer, built_config: Callable[[dict[str, Any]], Any]
) -> None:
    """ASGI requests (as ASGIHandler runs them) and sync management work in plain threads, at once."""
    from django.core import signals
    from django.core.handlers.asgi import ASGIHandler
    from django.db import connections

    from django_dbconfig import add_database, remove_database

    built_config({"databases": {"default": {"url": pg_plain_server.url(), "sslmode": "disable"}}})
    alias = "mixed"
    add_database(alias, {"pool": {"when": "asgi", "max_size": 3}}, like="default")
    uses: list[tuple[str, int, int]] = []  # (pooled or persistent, backend pid, raw connection id)
    lock = threading.Lock()

    def use() -> None:
        wrapper = connections[alias]
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid(), pg_sleep(0.002)")
            pid = int(cursor.fetchone()[0])
        kind = "pooled" if getattr(wrapper.connection, "_pool", None) is not None else "persistent"
        with lock:
            uses.append((kind, pid, id(wrapper.connection)))

    async def asgi_request() -> None:
        # What ASGIHandler.handle does around a view that queries through the ORM.
        async with ThreadSensitiveContext():
            await signals.request_started.asend(sender=ASGIHandler, scope={})
            await sync_to_async(use)()
            await sync_to_async(signals.request_finished.send)(sender=ASGIHandler)

    async def serve(count: int) -> None:
        for _ in range(count // 8):
            await asyncio.gather(*(asgi_request() for _ in range(8)))

    def management_work() -> None:
        for _ in range(30):
            use()
        connections[alias].close()

    try:
        workers = [threading.Thread(target=management_work) for _ in range(3)]
        for worker in workers:
            worker.start()
        asyncio.run(serve(120))
        for worker in workers:
            worker.join()
    finally:
        remove_database(alias)

    pooled = {(pid, raw) for kind, pid, raw in uses if kind == "pooled"}
    persistent = {(pid, raw) for kind, pid, raw in uses if kind == "persistent"}
    assert len([use for use in uses if use[0] == "pooled"]) == 120
    assert len([use for use in uses if use[0] == "persistent"]) == 90
    # No server session and no driver connection served both kinds of use.
    assert not {pid for pid, _ in pooled} & {pid for pid, _ in persistent}
    assert not {raw for _, raw in pooled} & {raw for _, raw in persistent}
    # Each management thread kept its one persistent session; requests shared the pool's.
    assert len({pid for pid, _ in persistent}) == 3
    assert 1 <= len({pid for pid, _ in pooled}) <= 3
