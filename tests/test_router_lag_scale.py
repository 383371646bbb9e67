"""Lag measurement with a fixed footprint: 200 runtime replicas, a few threads, one session each at most.

The replicas all point at one throwaway PostgreSQL with room for 200 sessions (the
machine's allows 100): a server that is no standby replays nothing, so its lag is
0.0, and what a measurement needs is a session and one query. The measuring
sessions are told apart by an application_name of this test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from django_dbconfig import add_database, remove_database
from django_dbconfig.routers import DatabaseRouter, lag
from tests.servers import PostgresServer

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

REPLICAS = 200
APP_NAME = "dbconfig_lag_scale_test"


def eventually(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_200_replicas_are_measured_by_a_few_threads_with_one_session_each(
    pg_server_factory: Any, built_config: Any
) -> None:
    server: PostgresServer = pg_server_factory(settings={"max_connections": str(REPLICAS + 50)})
    url = server.url()
    built = built_config({"databases": {"default": {"url": url, "sslmode": "disable"}}})
    router = DatabaseRouter(routes={}, replicas={}, databases={"default": built["default"]})

    def sessions() -> int:
        rows = server.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,))
        return int(rows[0][0])

    def measuring_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("dbconfig-lag")]

    names = [f"lag_replica_{n}" for n in range(REPLICAS)]
    try:
        for name in names:
            keys = {"host": server.host, "port": server.port, "application_name": APP_NAME}
            add_database(name, {**keys, "max_replica_lag": "30s"}, replica_of="default")
        eventually(lambda: all(router.replica_lag(name) == 0.0 for name in names), "every replica measured")
        counts = []
        for _ in range(10):  # a few rounds of measurements
            counts.append((len(measuring_threads()), sessions()))
            time.sleep(0.2)
        assert max(threads for threads, _ in counts) <= lag.WORKERS + 1  # and the guard
        assert max(count for _, count in counts) == REPLICAS
    finally:
        for name in names:
            remove_database(name)
        router.stop_measuring()
    # Measurers nobody listens to stop and close their sessions.
    eventually(lambda: sessions() == 0, "the measuring sessions to end")
    assert len(measuring_threads()) <= lag.WORKERS + 1


def test_replicas_that_hang_hold_their_threads_not_the_measurement_of_the_others(
    pg_server_factory: Any, built_config: Any
) -> None:
    import os
    import signal
    import subprocess

    frozen: PostgresServer = pg_server_factory()
    fine: PostgresServer = pg_server_factory()
    built = built_config({"databases": {"default": {"url": fine.url(), "sslmode": "disable"}}})
    router = DatabaseRouter(routes={}, replicas={}, databases={"default": built["default"]})
    hung = [f"hung_replica_{n}" for n in range(lag.WORKERS)]
    try:
        for name, server in [*((name, frozen) for name in hung), ("fine_replica", fine)]:
            keys = {"host": server.host, "port": server.port, "connect_timeout": "1s"}
            add_database(name, {**keys, "max_replica_lag": "30s"}, replica_of="default")
        names = [*hung, "fine_replica"]
        eventually(lambda: all(router.replica_lag(name) == 0.0 for name in names), "every replica measured")
        postmaster = int((frozen.data_dir / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        )
        processes = [postmaster, *(int(pid) for pid in children.stdout.split())]
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            # Both measuring threads end up stuck on the stopped server; its replicas count as no answer.
            eventually(
                lambda: all(router.replica_lag(name) is None for name in hung), "the hangs to be noticed"
            )
            measurer = router._lags["fine_replica"]
            before = measurer.started
            eventually(lambda: measurer.started > before + 1.5, "the other replica to be measured still")
            assert router.replica_lag("fine_replica") == 0.0
            assert len(lag.threads()) <= lag.WORKERS + len(hung) + 1
        finally:
            for pid in processes:
                os.kill(pid, signal.SIGCONT)
        eventually(
            lambda: all(router.replica_lag(name) == 0.0 for name in hung), "the stopped replicas to answer"
        )
        eventually(lambda: len(lag.threads()) == lag.WORKERS + 1, "the extra threads to leave")
    finally:
        for name in [*hung, "fine_replica"]:
            remove_database(name)
        router.stop_measuring()
