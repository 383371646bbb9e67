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
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from django_dbconfig import build_databases

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
        connection = self.handler[self.alias]
        try:
            while True:
                self.asked.wait()
                self.asked.clear()
                if self.stop:
                    return
                try:
                    self.answer = session_of(connection)
                except BaseException as exc:
                    self.answer = exc
                self.answered.set()
        finally:
            connection.close()


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
        gc.collect()
        assert child_sessions[0] == child_sessions[1]
        assert child_sessions[0] not in (mine, theirs)
        # The parent's sessions were neither used nor closed by the child.
        assert (session_of(connection), other.session()) == (mine, theirs)
    finally:
        other.close()


@pytest.mark.postgresql
@pytest.mark.parametrize("pool", [False, True], ids=["persistent", "pool"])
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
