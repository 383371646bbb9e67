"""After os.fork(), the child works on sessions of its own and the parent's sessions live on.

The server is the referee: a session is a backend pid (PostgreSQL) or a connection id
(MariaDB). The parent holds a persistent connection in its main thread and another in a
thread that stays alive across the fork; the child runs a full garbage collection (which
frees the wrappers of the threads the fork left behind) and then queries. Afterwards both
of the parent's connections still answer on the very sessions they had.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest

from django_dbconfig import build_databases
from tests.servers import PostgresServer

# Python 3.12+ warns that forking a process with threads may deadlock the child: that is the case
# under test, and the hooks keep the child from waiting on locks its parent's threads held.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
NEEDS_POOL = pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool exists from 5.1")

SESSION_SQL = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}


def session_of(connection: Any) -> int:
    """The server's id of the session this Django connection runs on."""
    with connection.cursor() as cursor:
        cursor.execute(SESSION_SQL[connection.vendor])
        return int(cursor.fetchone()[0])


def in_child(work: Callable[[], Any]) -> Any:
    """Run `work` in a forked child and return what it returned (JSON), or raise what it raised."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read)
            try:
                answer = {"ok": work()}
            except BaseException as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
                status = 1
            with os.fdopen(write, "w") as out:
                json.dump(answer, out)
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as source:
        text = source.read()
    _, status = os.waitpid(pid, 0)
    answer = json.loads(text or '{"error": "the child said nothing"}')
    if "error" in answer:
        raise AssertionError(f"in the forked child: {answer['error']}")
    assert os.waitstatus_to_exitcode(status) == 0
    return answer["ok"]


class OtherThread:
    """A thread that keeps its own connection of `handler[alias]` and queries it on demand."""

    def __init__(self, handler: Any, alias: str) -> None:
        self.handler, self.alias = handler, alias
        self.asked = threading.Event()
        self.answered = threading.Event()
        self.stop = False
        self.answer: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def session(self) -> int:
        self.answered.clear()
        self.asked.set()
        assert self.answered.wait(30), "the other thread did not answer"
        if isinstance(self.answer, BaseException):
            raise self.answer
        return int(self.answer)

    def close(self) -> None:
        self.stop = True
        self.asked.set()
        self.thread.join(10)

    def _run(self) -> None:
        # No local variable holds the connection object: only the thread's storage in the
        # handler does, as for a worker thread between requests. (A frame left in a thread
        # that the fork did not copy is never freed, and would hide what the collector does.)
        try:
            while True:
                self.asked.wait()
                self.asked.clear()
                if self.stop:
                    return
                try:
                    self.answer = session_of(self.handler[self.alias])
                except BaseException as exc:
                    self.answer = exc
                self.answered.set()
        finally:
            self.handler[self.alias].close()


@contextlib.contextmanager
def handler_for(settings: dict[str, Any]) -> Iterator[tuple[Any, str]]:
    """A ConnectionHandler (as django.db.connections) with one alias; its connections closed after."""
    from django.db.utils import ConnectionHandler

    # Django keeps pools by alias on the engine's class: a name of our own.
    alias = f"fork_{uuid.uuid4().hex[:8]}"
    handler = ConnectionHandler({"default": {"ENGINE": "django.db.backends.dummy"}, alias: settings})
    try:
        yield handler, alias
    finally:
        connection = handler[alias]
        connection.close()
        if hasattr(connection, "close_pool") and settings["OPTIONS"].get("pool"):
            connection.close_pool()


def check_fork(handler: Any, alias: str) -> None:
    connection = handler[alias]
    mine = session_of(connection)
    other = OtherThread(handler, alias)
    try:
        theirs = other.session()

        def child() -> list[int]:
            # Free what the fork left behind (the other thread's wrapper) before querying.
            gc.collect()
            first = session_of(handler[alias])
            gc.collect()
            return [first, session_of(handler[alias])]

        child_sessions = in_child(child)
        # The parent's sessions were neither closed (by the child's collection) nor used by the child.
        assert (session_of(connection), other.session()) == (mine, theirs)
        assert child_sessions[0] == child_sessions[1]
        assert child_sessions[0] not in (mine, theirs)
    finally:
        other.close()


@pytest.mark.postgresql
@pytest.mark.parametrize("pool", [False, pytest.param(True, marks=NEEDS_POOL)], ids=["persistent", "pool"])
def test_forked_child_uses_its_own_postgresql_sessions(
    shared_postgres: dict[str, Any], tmp_path: Path, pool: bool
) -> None:
    url = "postgresql://{user}@{host}:{port}/{dbname}".format(**shared_postgres)
    overrides = {"databases": {"default": {"pool": {"min_size": 1, "max_size": 4}}}} if pool else None
    settings = dict(build_databases(tmp_path, environ={"DATABASE_URL": url}, overrides=overrides)["default"])
    with handler_for(settings) as (handler, alias):
        check_fork(handler, alias)


@pytest.mark.mariadb
def test_forked_child_uses_its_own_mariadb_sessions(shared_mariadb: dict[str, Any], tmp_path: Path) -> None:
    url = "mariadb://{user}@{host}:{port}/{database}".format(**shared_mariadb)
    settings = dict(build_databases(tmp_path, environ={"DATABASE_URL": url})["default"])
    assert settings["CONN_MAX_AGE"] > 0
    with handler_for(settings) as (handler, alias):
        check_fork(handler, alias)


@pytest.mark.postgresql
@pytest.mark.parametrize(
    ("worker_class", "threads", "pool"),
    [
        ("sync", 1, False),
        pytest.param("sync", 1, True, marks=NEEDS_POOL),
        ("gthread", 4, False),
        pytest.param("gthread", 4, True, marks=NEEDS_POOL),
    ],
    ids=["sync-persistent", "sync-pool", "gthread-persistent", "gthread-pool"],
)
def test_gunicorn_preload_workers_never_share_the_masters_sessions(
    shared_postgres: dict[str, Any], tmp_path: Path, worker_class: str, threads: int, pool: bool
) -> None:
    from tests.gunicorn_load import serve_and_load
    from tests.servers import free_port

    url = "postgresql://{user}@{host}:{port}/{dbname}".format(**shared_postgres)
    workers = 3
    load = serve_and_load(
        tmp_path, url=url, label=worker_class, pool=pool, worker_class=worker_class, workers=workers,
        threads=threads, requests=600, clients=12, free_port=free_port,
    )  # fmt: skip
    assert (load.failed, load.errors) == (0, []), load.summary()
    # The workers that served (all of them, unless one took every keep-alive client: at least
    # two), each on sessions of its own, none of them the master's.
    assert 2 <= len(load.sessions) <= workers, load.summary()
    assert load.shared == 0, load.summary()
    # A thread keeps its persistent session; a pool (max_size 4) may grow while a connection is
    # being handed back.
    per_worker = 4 if pool else threads
    assert all(1 <= len(sessions) <= per_worker for sessions in load.sessions.values()), load.summary()
    # The master's preloaded session was never used nor closed by a worker.
    assert load.master_before is not None, load.summary()
    assert (load.master_after, load.master_error) == (load.master_before, None), load.summary()
    # On the server: the workers' sessions and the master's, nothing more (a pool keeps at most its max).
    most = workers * per_worker + (4 if pool else 1)
    assert len(load.sessions) + 1 <= load.sessions_on_server <= most, load.summary()


class Heard:
    """A lag subscriber (held weakly by the measurer: the test keeps it)."""

    def __init__(self) -> None:
        self.values: list[float | None] = []

    def heard(self, alias: str, lag_s: float | None) -> None:
        self.values.append(lag_s)

    def wait(self, count: int, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.values) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def own_sessions(server: Any, name: str) -> set[int]:
    """The server's sessions of this test only (PostgreSQL: its application_name; MariaDB: its user)."""
    if isinstance(server, PostgresServer):
        rows = server.psql("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name])
    else:
        rows = server.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", [name])
    return {int(row[0]) for row in rows}


def own_url(server: Any, name: str) -> str:
    """A URL whose sessions only this test makes (other tests share the throwaway server)."""
    if isinstance(server, PostgresServer):
        return server.url(application_name=name)
    password = uuid.uuid4().hex
    server.sql(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'", dbname="")
    server.sql(f"GRANT ALL ON `{server.dbname}`.* TO '{name}'@'%'", dbname="")
    return f"mariadb://{name}:{password}@{server.host}:{server.port}/{server.dbname}"


@pytest.mark.slow
@pytest.mark.parametrize("family", ["postgresql", "mariadb"])
def test_health_probes_and_lag_threads_start_afresh_in_a_forked_child(
    request: pytest.FixtureRequest, django_db_blocker: Any, tmp_path: Path, family: str
) -> None:
    from django_dbconfig.health import status
    from django_dbconfig.routers import lag
    from tests.helpers import registered

    server = request.getfixturevalue("pg_plain_server" if family == "postgresql" else "mariadb_plain_server")
    alias = f"fork_{uuid.uuid4().hex[:8]}"
    url = own_url(server, alias)
    settings = dict(build_databases(tmp_path, environ={"DATABASE_URL": url})["default"])
    heard = Heard()
    measurer = None
    with django_db_blocker.unblock(), registered({alias: settings}):
        try:
            assert status.check_aliases([alias], max_age=0)[0].ok
            if family == "postgresql":
                # The lag measurer keeps a session of its own (any server answers: not a standby, lag 0).
                measurer = lag.watch(alias, settings, heard.heard)
                assert heard.wait(1)
            before = own_sessions(server, alias)
            # The prober's session, and the lag measurer's.
            assert len(before) == (2 if family == "postgresql" else 1), before

            def child() -> list[Any]:
                gc.collect()
                probed = status.check_aliases([alias], max_age=0)[0]
                measured = heard.wait(len(heard.values) + 1) if measurer is not None else None
                gc.collect()
                return [probed.ok, probed.error, measured]

            probed_ok, probed_error, measured = in_child(child)
            # Every session of the parent (its prober's, its lag thread's) outlived the child.
            assert before <= own_sessions(server, alias)
            assert (probed_ok, probed_error) == (True, None)
            assert measured in (True, None)
            assert status.check_aliases([alias], max_age=0)[0].ok
            assert before <= own_sessions(server, alias)
        finally:
            if measurer is not None:
                measurer.unsubscribe(heard.heard)
                measurer.stop()
            if family == "mariadb":
                server.sql(f"DROP USER '{alias}'@'%'", dbname="")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["postgresql", "mariadb"])
def test_forked_child_never_writes_on_its_parents_tls_sessions(
    request: pytest.FixtureRequest, django_db_blocker: Any, tmp_path: Path, family: str
) -> None:
    """With TLS, one byte from the child on a shared socket would break the parent's stream."""
    from tests.test_health import tls_environ

    server = request.getfixturevalue("pg_tls_server" if family == "postgresql" else "mariadb_tls_server")
    url = server.url() if family == "postgresql" else server.url().replace("mysql://", "mariadb://", 1)
    environ = {"DATABASE_URL": url, **tls_environ(server, True)}
    settings = dict(build_databases(tmp_path, environ=environ)["default"])
    with django_db_blocker.unblock(), handler_for(settings) as (handler, alias):
        check_fork(handler, alias)


def test_sqlite_connections_are_left_to_the_child(django_db_blocker: Any) -> None:
    """No server session to share; Django's parallel test runner forks workers that inherit an
    in-memory database."""
    from django.db.utils import ConnectionHandler

    from django_dbconfig.backends.base import forks

    handler = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
    with django_db_blocker.unblock():
        connection = handler["default"]
        try:
            with connection.cursor() as cursor:
                cursor.execute("CREATE TABLE inherited (n integer)")
                cursor.execute("INSERT INTO inherited VALUES (42)")

            def child() -> list[Any]:
                with handler["default"].cursor() as cursor:
                    cursor.execute("SELECT n FROM inherited")
                    return [forks.forks_seen(), cursor.fetchone()[0]]

            seen, value = in_child(child)
            assert (seen, value) == (forks.forks_seen() + 1, 42)
        finally:
            connection.close()


_provider_entered = threading.Event()
_provider_release = threading.Event()


def slow_provider(alias: str, settings: Any) -> str:
    """A password provider that hangs in the thread named "busy-provider" until released."""
    if threading.current_thread().name == "busy-provider":
        _provider_entered.set()
        _provider_release.wait(30)
    return "not-a-real-secret"


def test_a_password_provider_busy_at_the_fork_does_not_hold_up_the_child() -> None:
    from django_dbconfig.backends.base import credentials

    settings = {
        "HOST": "127.0.0.1",
        "PORT": "5432",
        "USER": "app",
        "NAME": "app",
        "DBCONFIG": {"password_provider": "tests.test_forks.slow_provider"},
    }
    alias = f"fork_{uuid.uuid4().hex[:8]}"
    busy = threading.Thread(target=credentials.password_for, args=(alias, settings), name="busy-provider")
    busy.start()
    try:
        assert _provider_entered.wait(10)

        def child() -> str | None:
            signal.alarm(10)  # a child stuck on its parent's lock dies and says nothing
            return credentials.password_for(alias, settings)

        assert in_child(child) == "not-a-real-secret"
    finally:
        _provider_release.set()
        busy.join(10)
