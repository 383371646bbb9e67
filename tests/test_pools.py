"""Pools against a server that stops and comes back: a pooled request fails fast naming the
alias, and the first request after the server is back succeeds.

Each kind of pool is tested: `pool: true` on a configured alias, the ASGI pool of the
default (`pool: "asgi"`, for a connection opened while an ASGI request is served), and
a runtime alias's small pool. A throwaway server of this module is stopped and started.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django
import pytest
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.db import OperationalError, connections
from django.db.utils import ConnectionHandler

from django_dbconfig import add_database, load_config, remove_database
from tests.servers import PostgresServer

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.skipif(django.VERSION < (5, 1), reason="Django has connection pools from 5.1"),
]

CONNECT_TIMEOUT = 2  # seconds: libpq's smallest


@pytest.fixture(scope="module")
def stoppable() -> Iterator[PostgresServer]:
    from tests.servers import serving

    with serving("throwaway PostgreSQL", lambda: PostgresServer().__enter__()) as server:
        yield server


@contextmanager
def request(*, asgi: bool) -> Iterator[None]:
    """One request's signals in this thread, as Django's ASGI or WSGI handler sends them."""
    sender: Any = ASGIHandler if asgi else object
    signals.request_started.send(sender=sender, scope={})
    try:
        yield
    finally:
        signals.request_finished.send(sender=sender)


def query(wrapper: Any, *, asgi: bool) -> int:
    try:
        with request(asgi=asgi), wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert wrapper.connection._pool is not None  # it came from the pool
            return int(cursor.fetchone()[0])
    finally:
        # What request_finished does for the aliases of DATABASES (CONN_MAX_AGE is 0 with
        # pool true): the connection goes back to the pool.
        wrapper.close_if_unusable_or_obsolete()


@contextmanager
def configured(server: PostgresServer, pool: Any) -> Iterator[Any]:
    alias = f"pooled_{uuid.uuid4().hex[:8]}"
    keys = {"url": server.url(), "sslmode": "disable", "connect_timeout": f"{CONNECT_TIMEOUT}s", "pool": pool}
    settings = load_config(environ={}, overrides={"databases": {alias: keys}}).databases()[alias]
    # Django wants a "default" in any DATABASES: the same settings, never connected.
    wrapper = ConnectionHandler({"default": dict(settings), alias: dict(settings)})[alias]
    try:
        yield wrapper
    finally:
        wrapper.close()
        wrapper.close_pool()


@contextmanager
def runtime(server: PostgresServer, built_config: Callable[[dict[str, Any]], Any]) -> Iterator[Any]:
    built_config({"databases": {"default": {"url": server.url(), "sslmode": "disable"}}})
    alias = f"tenant_{uuid.uuid4().hex[:8]}"
    add_database(alias, {"pool": True, "connect_timeout": f"{CONNECT_TIMEOUT}s"}, like="default")
    try:
        yield connections[alias]
    finally:
        remove_database(alias)


@pytest.mark.parametrize("kind", ["pool true", "ASGI pool of the default", "runtime alias with pool"])
def test_a_pooled_request_fails_fast_naming_the_alias_and_the_first_after_the_restart_succeeds(
    stoppable: PostgresServer, built_config: Callable[[dict[str, Any]], Any], kind: str
) -> None:
    asgi = kind == "ASGI pool of the default"
    if kind == "runtime alias with pool":
        alias_of = runtime(stoppable, built_config)
    else:
        alias_of = configured(stoppable, "asgi" if asgi else True)
    with alias_of as wrapper:
        query(wrapper, asgi=asgi)  # the pool is open and holds a connection
        stoppable.stop("fast")
        try:
            started = time.monotonic()
            with pytest.raises(OperationalError) as failure:
                query(wrapper, asgi=asgi)
            failed_after = time.monotonic() - started
        finally:
            stoppable.start()
        back = time.monotonic()
        query(wrapper, asgi=asgi)  # the first request after the restart
        recovered_after = time.monotonic() - back
    print(
        f"{kind}: failed after {failed_after:.2f} s, first request after the restart {recovered_after:.2f} s"
    )
    message = str(failure.value)
    assert f'"{wrapper.alias}"' in message, message
    assert "failed" in message.partition("the last: ")[2], message  # the driver's reason
    assert stoppable.password not in message
    assert failed_after <= CONNECT_TIMEOUT + 0.5
    assert recovered_after <= 1.0


def test_a_runtime_alias_gets_a_small_pool_unless_it_says(
    stoppable: PostgresServer, built_config: Callable[[dict[str, Any]], Any]
) -> None:
    with runtime(stoppable, built_config) as wrapper:
        query(wrapper, asgi=False)
        pool = wrapper.pool
        assert (pool.min_size, pool.max_size, pool.num_workers, pool.max_idle) == (0, 2, 1, 60)
    alias = f"tenant_{uuid.uuid4().hex[:8]}"
    add_database(alias, {"pool": {"max_size": 5}}, like="default")
    try:
        pool = connections[alias].pool
        assert (pool.min_size, pool.max_size, pool.num_workers) == (0, 5, 1)
    finally:
        remove_database(alias)


def test_a_forked_child_forgets_the_parents_pool_and_makes_its_own(stoppable: PostgresServer) -> None:
    import os

    with configured(stoppable, True) as wrapper:
        parent_pid = query(wrapper, asgi=False)
        parent_pool = wrapper.pool
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the child: report, then leave without running the parent's cleanup
            try:
                fresh = wrapper.pool is not parent_pool
                pid = query(wrapper, asgi=False)
                os.write(write, f"{fresh} {pid}".encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as answer:
            fresh, child_pid = answer.read().split()
        os.waitpid(child, 0)
        # The child made a pool of its own and a session of its own; the parent's pool
        # and its sessions were left alone (closing them in the child would have ended them).
        assert fresh == "True"
        alive = stoppable.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [parent_pid])
        assert alive == [(1,)]
        assert wrapper.pool is parent_pool
        parents = {query(wrapper, asgi=False) for _ in range(8)}
        assert parent_pid in parents
        assert int(child_pid) not in parents


def test_close_pool_closes_the_asgi_pool_from_outside_a_request(stoppable: PostgresServer) -> None:
    """As Django's test runner does before dropping a test database."""
    with configured(stoppable, "asgi") as wrapper:
        query(wrapper, asgi=True)
        asgi_pool = wrapper._connection_pools[wrapper.alias]
        assert wrapper.connection is None  # given back at the request's end
        assert wrapper.pool is None  # outside a request the wrapper sees no pool
        wrapper.close_pool()
        assert asgi_pool.closed
        assert wrapper.alias not in wrapper._connection_pools


@pytest.mark.parametrize("pool", [True, "asgi"], ids=["pool true", "ASGI pool"])
def test_a_wrapper_uses_the_pool_that_replaced_the_one_it_used(stoppable: PostgresServer, pool: Any) -> None:
    """The wrapper keeps the pool it last used, but only while the alias still has it."""
    asgi = pool == "asgi"

    def served_by(wrapper: Any) -> Any:
        """The pool that served one request of `wrapper`."""
        pools = wrapper._connection_pools
        before = {id(p): p.get_stats().get("requests_num", 0) for p in pools.values()}
        query(wrapper, asgi=asgi)
        (used,) = [p for p in pools.values() if p.get_stats().get("requests_num", 0) != before.get(id(p), 0)]
        return used

    with configured(stoppable, pool) as wrapper:
        first = served_by(wrapper)
        assert served_by(wrapper) is first
        wrapper.close_pool()  # as a test changing settings, or a fork, drops it
        assert first.closed
        second = served_by(wrapper)
        assert (second is not first, second.closed) == (True, False)
        # A pool put in the alias's place by another wrapper (another thread's) is used too.
        settings = dict(wrapper.settings_dict)
        other = ConnectionHandler({"default": settings, wrapper.alias: settings})[wrapper.alias]
        other.close_pool()
        assert second.closed
        third = served_by(other)
        assert served_by(wrapper) is third
        assert third not in (first, second)
