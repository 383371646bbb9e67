"""Under ASGI the defaults keep the server's connection count bounded and leave nothing open.

A real ASGI server (uvicorn, one worker) serves a project whose DATABASES come from
build_databases(), against a throwaway PostgreSQL with max_connections = 30, loaded by
ab. The served process runs with the garbage collector off, so any connection that
closes is closed by the code, not by a collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.asgi_load import serve_and_load, write_project
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
def test_asgi_defaults_bound_connections_and_close_them_when_requests_end(
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
    # One connection per request in flight; a request's connection closes just after
    # its response is sent, so ab's next request may overlap it briefly.
    assert 1 <= result.peak <= CONCURRENCY + 3
    assert result.remaining == 0, result.after


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
