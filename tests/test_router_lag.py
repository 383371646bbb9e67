"""Lag-aware routing without a server: SQLite replicas never lag; an unreachable one gets no reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_dbconfig import build_databases
from django_dbconfig.conf.config import last_config
from django_dbconfig.routers import DatabaseRouter, _state, lag, reset_pins
from tests.apps.shop.models import Order
from tests.test_router import registered


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    _state.set(None)
    yield
    _state.set(None)


def eventually(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def requests(router: DatabaseRouter, count: int) -> set[str]:
    """Where the first read of each of `count` requests went."""
    seen = set()
    for _ in range(count):
        seen.add(router.db_for_read(Order))
        reset_pins()
    return seen


def router_for(
    tmp_path: Path, databases: dict[str, Any], **kwargs: Any
) -> tuple[DatabaseRouter, dict[str, Any]]:
    built = build_databases(tmp_path, environ={}, overrides={"databases": databases})
    config = last_config()
    assert config is not None
    return DatabaseRouter(routes={"shop": "lg"}, replicas=config.replicas, databases=built, **kwargs), built


def test_replicas_with_a_limit_get_reads_once_measured_and_the_limit_comes_from_the_config(
    tmp_path: Path, django_db_blocker: Any
) -> None:
    databases = {
        "lg": {"backend": "sqlite", "name": "lg.sqlite3"},
        "lg_r1": {"replica_of": "lg", "max_replica_lag": "2s"},
        "lg_r2": {"replica_of": "lg", "max_replica_lag": "500ms"},
    }
    router, built = router_for(tmp_path, databases)
    try:
        # SQLite replicas are the primary's own file: measured, they never lag.
        with django_db_blocker.unblock(), registered(built), override_settings(DATABASE_ROUTERS=[router]):
            eventually(lambda: requests(router, 4) == {"lg_r1", "lg_r2"}, "both fit")
            assert [router.replica_lag("lg_r1"), router.replica_lag("lg_r2"), router.replica_lag("lg")] == [
                0.0,
                0.0,
                None,
            ]
            assert router._limits == {"lg_r1": 2.0, "lg_r2": 0.5}
    finally:
        router.stop_measuring()


def test_a_replica_that_cannot_be_reached_gets_no_reads(tmp_path: Path, django_db_blocker: Any) -> None:
    databases = {
        "lg": {"backend": "sqlite", "name": "lg.sqlite3"},
        "lg_r1": {"replica_of": "lg"},
        # A file in a directory that does not exist: every connection attempt fails.
        "lg_r2": {"replica_of": "lg", "name": "missing-dir/lg.sqlite3"},
    }
    router, built = router_for(tmp_path, databases, max_replica_lag={"lg_r2": 5.0})
    try:
        with django_db_blocker.unblock(), registered(built), override_settings(DATABASE_ROUTERS=[router]):
            eventually(
                lambda: router._lags["lg_r2"].error is not None,
                "a failed measurement",
            )
            # lg_r1 has no limit: it always serves; lg_r2 never does.
            assert requests(router, 10) == {"lg_r1"}
    finally:
        router.stop_measuring()


def test_without_any_fit_replica_reads_go_to_the_primary(tmp_path: Path, django_db_blocker: Any) -> None:
    databases = {
        "lg": {"backend": "sqlite", "name": "lg.sqlite3"},
        "lg_r1": {"replica_of": "lg", "name": "missing-dir/lg.sqlite3", "max_replica_lag": "1s"},
    }
    router, built = router_for(tmp_path, databases)
    try:
        with django_db_blocker.unblock(), registered(built):
            assert router.db_for_read(Order) == "lg"  # before any measurement, too
            time.sleep(1.5)
            assert requests(router, 10) == {"lg"}
    finally:
        router.stop_measuring()


def test_without_max_replica_lag_nothing_is_measured(tmp_path: Path) -> None:
    router, _ = router_for(
        tmp_path, {"lg": {"backend": "sqlite", "name": "lg.sqlite3"}, "lg_r1": {"replica_of": "lg"}}
    )
    assert [router._lags, router.db_for_read(Order)] == [{}, "lg_r1"]


def test_routers_of_one_process_share_one_measurer_per_replica_on_the_fixed_threads(
    tmp_path: Path, django_db_blocker: Any
) -> None:
    import threading

    databases = {
        "lg": {"backend": "sqlite", "name": "lg.sqlite3"},
        "lg_r1": {"replica_of": "lg", "max_replica_lag": "2s"},
    }
    first, built = router_for(tmp_path, databases)
    try:
        with django_db_blocker.unblock(), registered(built):
            second = DatabaseRouter(routes={"shop": "lg"}, replicas={"lg": ["lg_r1"]}, databases=built)
            try:
                assert first._lags["lg_r1"] is second._lags["lg_r1"]
                eventually(lambda: second.db_for_read(Order) == "lg_r1", "the second router to hear the lag")
                measuring = [t.name for t in threading.enumerate() if t.name.startswith("dbconfig-lag")]
                assert 1 <= len(measuring) <= lag.WORKERS + 1  # and the guard
            finally:
                second.stop_measuring()
            assert first._lags["lg_r1"].running  # the first router still listens
    finally:
        first.stop_measuring()
    eventually(lambda: not first._lags["lg_r1"].running, "the measurer nobody listens to to stop")


def test_a_forked_child_forgets_the_parents_measuring_threads_and_connections(
    tmp_path: Path, django_db_blocker: Any
) -> None:
    import json
    import os

    databases = {
        "lg": {"backend": "sqlite", "name": "lg.sqlite3"},
        "lg_r1": {"replica_of": "lg", "max_replica_lag": "2s"},
    }
    router, built = router_for(tmp_path, databases)
    try:
        with django_db_blocker.unblock(), registered(built):
            eventually(lambda: router.db_for_read(Order) == "lg_r1", "the first measurement")
            measurer = router._lags["lg_r1"]
            eventually(lambda: measurer._connection is not None, "the measuring connection")
            parents = (measurer._connection, lag.threads())
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: what it inherited, then leave at once
                os.close(read)
                connection, threads = parents
                seen = [measurer._connection is not connection, not set(threads) & set(lag.threads())]
                os.write(write, json.dumps(seen).encode())
                os._exit(0)
            os.close(write)
            with os.fdopen(read) as pipe:
                seen = json.loads(pipe.read())
            os.waitpid(pid, 0)
            assert seen == [True, True]
            # The parent's are its own still, and it goes on measuring with them.
            started = measurer.started
            eventually(lambda: measurer.started > started, "the parent's next measurement")
            assert (measurer._connection, lag.threads()) == parents
    finally:
        router.stop_measuring()
