"""Runtime aliases at scale: removal frees what every thread made, with the threads alive.

Three cycles of: add 150 aliases, open a session on each from a pool of 16 threads
that stays alive throughout, remove them all from the main thread. After each cycle
(and a gc.collect()) no connection object or driver connection of a removed alias
is alive anywhere (weak references), the tracking module holds nothing for them,
Django's per-alias-name set has forgotten them, and the server's sessions are back.
Costs at 10,000 aliases are measured by benchmarks/runtime.py, not here.
"""

from __future__ import annotations

import gc
import platform
import sys
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections
from django.db.backends.base import base as django_base
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import ConnectionDoesNotExist

from django_dbconfig import add_database, remove_database
from django_dbconfig.runtime import tracking
from tests.servers import PostgresServer

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

CYCLES = 3
SIZE = 150
THREADS = 16


def app_sessions(server: PostgresServer) -> int:
    rows = server.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'", dbname="postgres")
    return int(rows[0][0])


def eventually_sessions(server: PostgresServer, expected: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := app_sessions(server)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return count


def test_removal_frees_what_every_thread_made_while_the_threads_live(
    pg_server_factory: Any, built_config: Any, django_db_blocker: Any
) -> None:
    server: PostgresServer = pg_server_factory(settings={"max_connections": str(SIZE + 50)})
    built_config({"databases": {"default": {"url": server.url(), "sslmode": "disable", "conn_max_age": 600}}})

    def touch(alias: str) -> tuple[weakref.ref[Any], weakref.ref[Any], int]:
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return weakref.ref(connection), weakref.ref(connection.connection), connection._thread_ident

    def gone(alias: str) -> bool:
        try:
            connections[alias]
        except ConnectionDoesNotExist:
            return True
        return False

    with django_db_blocker.unblock(), ThreadPoolExecutor(THREADS) as pool:
        for cycle in range(CYCLES):
            names = [f"scale_{cycle}_{n}" for n in range(SIZE)]
            for name in names:
                add_database(name, {}, like="default")
            touched = list(pool.map(touch, names))
            assert len({thread for _, _, thread in touched}) > 1  # made in several threads
            assert app_sessions(server) == SIZE
            for name in names:
                remove_database(name)
            gc.collect()
            alive = [
                ref() for wrapper, driver, _ in touched for ref in (wrapper, driver) if ref() is not None
            ]
            # type(), not isinstance(): a lazy object (the staticfiles storage) would set itself up.
            wrappers = [
                o for o in gc.get_objects() if issubclass(type(o), BaseDatabaseWrapper) and o.alias in names
            ]
            assert (alive, wrappers) == ([], [])
            assert tracking.kept()["aliases"] == tracking.kept()["objects"] == 0
            assert set(names) & getattr(django_base, "RAN_DB_VERSION_CHECK", set()) == set()
            assert eventually_sessions(server, 0) == 0
            # The pool's threads (alive all along) see the aliases gone.
            assert all(pool.map(gone, names))


def test_adding_and_removing_never_copy_the_settings(built_config: Any, tmp_path: Any) -> None:
    built_config({"databases": {"default": {"backend": "sqlite", "name": str(tmp_path / "d.sqlite3")}}})
    add_database("first", {}, like="default")
    settings = connections.settings
    for n in range(50):
        add_database(f"tenant_{n}", {}, like="default")
    for n in range(50):
        remove_database(f"tenant_{n}")
    assert connections.settings is settings
    assert ("first" in connections, "tenant_0" in connections, list(connections)) == (
        True,
        False,
        ["default", "first"],
    )


def test_registries_are_rebuilt_at_their_size_once_three_quarters_of_the_aliases_are_gone(
    built_config: Any, tmp_path: Any
) -> None:
    from django_dbconfig.runtime import databases

    built_config({"databases": {"default": {"backend": "sqlite", "name": str(tmp_path / "d.sqlite3")}}})
    names = [f"tenant_{n}" for n in range(1_000)]
    for name in names:
        add_database(name, {}, like="default")
        connections[name].ensure_connection()  # Django notes each alias whose version it checked
    kept = {name: connections[name] for name in names[-10:]}
    settings = connections.settings
    for name in names[:700]:
        remove_database(name)
    # 300 of 1,000 left: no copy yet (copies are paid once per three quarters of the peak).
    assert connections.settings is settings
    for name in names[700:750]:
        remove_database(name)

    def registries() -> dict[str, Any]:
        return {
            "connections.settings": connections.settings,
            "runtime": databases._runtime,
            "tracked names": tracking._names,
            "tracked objects": tracking._made,
            "version checked": django_base.RAN_DB_VERSION_CHECK,
        }

    # Each takes the room a fresh copy of its present keys takes, not the room of 1,000 keys.
    sizes = {label: sys.getsizeof(found) for label, found in registries().items()}
    assert sizes == {label: sys.getsizeof(found.copy()) for label, found in registries().items()}
    assert connections.settings is not settings
    # 250 left: the ten kept are served as before, by the same connection objects.
    for name, connection in kept.items():
        assert connections[name] is connection
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    for name in names[750:]:
        remove_database(name)
    assert list(connections) == ["default"]


def test_free_memory_is_handed_back_once_per_three_quarters_of_the_aliases_removed(
    built_config: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    built_config({"databases": {"default": {"backend": "sqlite", "name": str(tmp_path / "d.sqlite3")}}})
    given_back: list[int] = []
    trim = tracking.give_back_memory
    monkeypatch.setattr(
        tracking, "give_back_memory", lambda: (given_back.append(len(connections.settings)), trim())
    )
    names = [f"tenant_{n}" for n in range(400)]
    for name in names:
        add_database(name, {}, like="default")
    for name in names:
        remove_database(name)
    # Once, when 100 of 400 were left (plus default): not per removal, and not when so few
    # were added that what they took is a few kilobytes (COMPACT_FROM).
    assert given_back == [101]
    for name in names[:100]:
        add_database(name, {}, like="default")
        remove_database(name)
    assert given_back == [101]
    # On glibc the hand-back is glibc's malloc_trim, not a silent no-op.
    assert (tracking._malloc_trim() is not None) == (platform.libc_ver()[0] == "glibc")
