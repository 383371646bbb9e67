"""The health endpoint's footprint: a fixed number of probing threads, probe connections
closed when idle, a public stop, stale answers while an alias hangs, runtime aliases
probed only when named (or when a setting asks) and never listed to anonymous callers.

Threads are counted by name (`dbconfig-health-N`), sessions on the server
(pg_stat_activity of a throwaway PostgreSQL's `app` role).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from django_dbconfig import add_database
from django_dbconfig.health import status
from tests.helpers import registered
from tests.servers import PostgresServer
from tests.test_health_endpoint import URL, entry

ALIASES = 120


@pytest.fixture(autouse=True)
def _endpoint(settings: Any, django_db_blocker: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = "tests.health_urls"
    settings.MIDDLEWARE = []
    settings.DBCONFIG_HEALTH_CACHE_SECONDS = 0
    status.forget()
    with django_db_blocker.unblock():
        yield
    status.forget()


def get(query: str = "") -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    response = Client().get(URL + query)
    return response.status_code, json.loads(response.content), time.monotonic() - started


def probing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dbconfig-health")]


def app_sessions(server: PostgresServer) -> int:
    rows = server.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'", dbname="postgres")
    return int(rows[0][0])


def eventually(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - started


def server_processes(server: PostgresServer) -> list[int]:
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False)
    return [postmaster, *(int(pid) for pid in children.stdout.split())]


@pytest.mark.postgresql
@pytest.mark.slow
def test_many_aliases_are_probed_by_a_fixed_number_of_threads_and_idle_probes_close(
    tmp_path: Path, pg_server_factory: Any
) -> None:
    server: PostgresServer = pg_server_factory(settings={"max_connections": str(ALIASES + 30)})
    aliases = {
        f"many_{n}": entry(tmp_path, server.url(), DBCONFIG_DEFAULT_CONN_MAX_AGE="2") for n in range(ALIASES)
    }
    with registered(aliases):
        code, body, _ = get()
        assert (code, len(body["databases"])) == (200, ALIASES + 1)  # and `default`
        assert 1 <= len(probing_threads()) <= status.PROBE_THREADS
        assert app_sessions(server) <= ALIASES  # one probe connection per alias at most
        # Past conn_max_age (2 s) and a sweep, the idle probe connections are closed.
        eventually(lambda: app_sessions(server) == 0, "idle probe connections to close")
        code, body, _ = get()
        assert (code, len(probing_threads()) <= status.PROBE_THREADS) == (200, True)
        status.stop_probing()
        assert eventually(lambda: probing_threads() == [], "the probing threads to stop", timeout=5) < 5
        eventually(lambda: app_sessions(server) == 0, "stop_probing() to close the probe connections")
        # A later request starts them again.
        assert get("?database=many_0")[0] == 200


@pytest.mark.postgresql
@pytest.mark.slow
def test_while_an_alias_hangs_other_requests_answer_at_once_from_its_last_result(
    tmp_path: Path, pg_server_factory: Any, settings: Any
) -> None:
    server: PostgresServer = pg_server_factory()
    settings.DBCONFIG_HEALTH_CACHE_SECONDS = 0.5
    frozen = entry(tmp_path, server.url(), DBCONFIG_DEFAULT_CONNECT_TIMEOUT="2s")
    with registered({"frozen": frozen}):
        assert get("?database=frozen")[0] == 200  # its probe connection is open
        processes = server_processes(server)
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(0.6)  # the cached answer is too old
            code, body, first = get("?database=frozen")
            # The request that started the probe waits for it up to the connect timeout and a margin.
            assert (code, body["databases"][0]["ok"], body["databases"][0]["stale"]) == (503, False, False)
            assert first < 6, first
            time.sleep(0.6)
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(lambda _: get("?database=frozen"), range(8)))
            rows = [body["databases"][0] for _, body, _ in answers]
            times = [took for _, _, took in answers]
            assert [(row["ok"], row["stale"]) for row in rows] == [(False, True)] * 8
            assert all(row["age_s"] >= 0.5 for row in rows), rows
            assert max(times) < 1.5, times  # not the connect timeout: none waits for the hung probe
            assert len(probing_threads()) <= status.PROBE_THREADS
        finally:
            for pid in processes:
                os.kill(pid, signal.SIGCONT)
        eventually(lambda: get("?database=frozen")[0] == 200, "the alias to answer again")


def test_runtime_aliases_are_probed_only_when_named_and_not_listed_to_anonymous_callers(
    tmp_path: Path, built_config: Any, settings: Any
) -> None:
    built_config({"databases": {"default": {"backend": "sqlite", "name": str(tmp_path / "d.sqlite3")}}})
    add_database("tenant_7", {}, like="default")
    code, body, _ = get()
    assert (code, [row["alias"] for row in body["databases"]], "runtime_databases" in body) == (
        200,
        ["default"],
        False,
    )
    assert status.cached(["tenant_7"], max_age=3600) is None  # never probed
    code, body, _ = get("?database=tenant_7")
    assert (code, [row["alias"] for row in body["databases"]]) == (200, ["tenant_7"])
    code, body, _ = get("?database=nope")
    assert (code, body["known"]) == (400, ["default"])
    metrics = Client().get(URL + "?format=openmetrics").content.decode()
    assert "tenant_7" not in metrics
    settings.DBCONFIG_HEALTH_RUNTIME_ALIASES = True
    code, body, _ = get()
    assert (code, [row["alias"] for row in body["databases"]], body["runtime_databases"]) == (
        200,
        ["default"],
        {"probed": 1, "failed": 0},
    )
    settings.DBCONFIG_HEALTH_RUNTIME_ALIASES = "yes"
    with pytest.raises(Exception, match="DBCONFIG_HEALTH_RUNTIME_ALIASES must be True or False"):
        get()


def test_a_forked_child_forgets_the_probing_threads_and_connections_of_its_parent() -> None:
    assert get()[0] == 200
    assert probing_threads()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it inherited, then leave at once
        os.close(read)
        os.write(
            write,
            json.dumps([status.probe_threads() == [], status.cached(["default"], max_age=3600)]).encode(),
        )
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        threads_gone, cached = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert (threads_gone, cached) == (True, None)
    assert probing_threads()  # the parent's are still there
