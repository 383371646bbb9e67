"""MariaDB: a write alias whose server turns read_only on under a live connection (the writer flip).

Two throwaway servers behind a forwarder standing for the DNS name or proxy of the
writer. The old writer turns `read_only` on and the forwarder moves to the new one:
the open connection stays on the old server. Django's engine keeps it and every write
fails; ours fails the write that meets it, names the alias, drops the connection, and
the next request writes on the new server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, OperationalError, connections

from django_dbconfig import build_databases, check_databases
from django_dbconfig.backends.base.demotion import DemotedWriterError
from tests.moving_proxy import MovingProxy
from tests.servers import MariaDBServer, serving
from tests.test_health import DJANGO

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

BEFORE, AFTER = 5, 10


class Flip(NamedTuple):
    old: MariaDBServer
    new: MariaDBServer
    proxy: MovingProxy

    def cleanup(self) -> None:
        self.proxy.cleanup()
        self.new.cleanup()
        self.old.cleanup()


def start_flip() -> Flip:
    servers: list[MariaDBServer] = []
    try:
        for _ in range(2):
            server = MariaDBServer()
            servers.append(server)
            server.start()
            server.sql("CREATE TABLE writes (id int AUTO_INCREMENT PRIMARY KEY, n int)")
        old, new = servers
        return Flip(old, new, MovingProxy((old.host, old.port)))
    except BaseException:
        for server in servers:
            server.cleanup()
        raise


@pytest.fixture
def flip() -> Iterator[Flip]:
    with serving("two throwaway MariaDB servers", start_flip) as servers:
        yield servers


def write_alias(tmp_path: Path, flip: Flip, *, engine: str | None = None) -> dict[str, Any]:
    entry = {
        "backend": "mariadb",
        "host": flip.proxy.host,
        "port": flip.proxy.port,
        "name": flip.old.dbname,
        "user": flip.old.user,
        "password": flip.old.password,
    }
    settings = dict(build_databases(tmp_path, overrides={"databases": {"default": entry}})["default"])
    if engine:
        settings["ENGINE"] = engine
    return settings


def request(name: str) -> tuple[int | None, BaseException | None]:
    """One request writing one row: (the server's port, or the error)."""
    request_started.send(sender=None)
    try:
        with connections[name].cursor() as cursor:
            cursor.execute("INSERT INTO writes (n) VALUES (1)")
            cursor.execute("SELECT @@port")
            return int(cursor.fetchone()[0]), None
    except DatabaseError as exc:
        return None, exc
    finally:
        request_finished.send(sender=None)


def run_flip(name: str, flip: Flip) -> tuple[list[Any], list[Any]]:
    before = [request(name) for _ in range(BEFORE)]
    flip.old.sql("SET GLOBAL read_only = ON", dbname="")
    flip.proxy.move((flip.new.host, flip.new.port))
    after = [request(name) for _ in range(AFTER)]
    failed = sum(error is not None for _, error in after)
    print(f"\n{name}: writes before/after the flip {BEFORE}/{AFTER}, failed 0/{failed}")
    return before, after


def test_the_write_meeting_a_writer_turned_read_only_names_the_alias_and_the_next_reaches_the_new_writer(
    tmp_path: Path, flip: Flip, register: Any
) -> None:
    register("flip_ours", write_alias(tmp_path, flip))
    before, after = run_flip("flip_ours", flip)
    assert before == [(flip.old.port, None)] * BEFORE
    (_, error), *rest = after
    assert rest == [(flip.new.port, None)] * (AFTER - 1)
    assert isinstance(error, OperationalError)
    assert isinstance(error, DemotedWriterError)
    assert error.args[0] == 1290
    assert error.args[1] == (
        'Database "flip_ours" is meant for writes, but its server was demoted (it runs with read_only on): '
        "the connection was closed and the next query connects again. The server said: The MariaDB "
        "server is running with the --read-only option so it cannot execute this statement"
    )


def test_django_engine_keeps_writing_to_the_read_only_server(
    tmp_path: Path, flip: Flip, register: Any
) -> None:
    """The control: the connection stays on the old writer and every write fails."""
    register("flip_django", write_alias(tmp_path, flip, engine=DJANGO["mysql"]))
    _, after = run_flip("flip_django", flip)
    assert [error is not None for _, error in after] == [True] * AFTER


def test_a_demoted_writer_in_place_recovers_once_it_is_writable_again(
    tmp_path: Path, flip: Flip, register: Any
) -> None:
    """read_only on under a live connection, no move: each write fails while it lasts, each on a
    new connection; once the server is writable again the next write works."""
    connection = register("flip_in_place", write_alias(tmp_path, flip))
    assert request("flip_in_place") == (flip.old.port, None)
    first_id = connection.connection.thread_id()
    flip.old.sql("SET GLOBAL read_only = ON", dbname="")
    _, error = request("flip_in_place")
    assert isinstance(error, DemotedWriterError)
    assert connection.connection is None
    _, error = request("flip_in_place")
    assert isinstance(error, DemotedWriterError)
    flip.old.sql("SET GLOBAL read_only = OFF", dbname="")
    assert request("flip_in_place") == (flip.old.port, None)
    assert connection.connection.thread_id() != first_id


def test_a_session_read_only_transaction_keeps_its_connection(
    tmp_path: Path, flip: Flip, register: Any
) -> None:
    """1792 comes from the session's own read-only transaction: Django's error, the connection stays."""
    connection = register("flip_own", write_alias(tmp_path, flip))
    assert request("flip_own") == (flip.old.port, None)
    raw = connection.connection
    with pytest.raises(OperationalError) as caught, connection.cursor() as cursor:
        cursor.execute("START TRANSACTION READ ONLY")
        try:
            cursor.execute("INSERT INTO writes (n) VALUES (1)")
        finally:
            cursor.execute("ROLLBACK")
    assert caught.value.args[0] == 1792
    assert not isinstance(caught.value, DemotedWriterError)
    assert connection.connection is raw


def test_dbcheck_reports_an_error_when_the_write_alias_reaches_a_server_running_read_only(
    tmp_path: Path, flip: Flip, register: Any
) -> None:
    register("flip_dbcheck", write_alias(tmp_path, flip))
    flip.old.sql("SET GLOBAL read_only = ON", dbname="")

    def found() -> tuple[str | None, list[tuple[str, str]]]:
        (row,) = check_databases(["flip_dbcheck"])["databases"]
        return row["server"]["role"], [(p["id"], p["message"]) for p in row["problems"]]

    assert found() == (
        "standby",
        [
            (
                "dbconfig.E160",
                f'"flip_dbcheck" is meant for writes, but the server it reached (127.0.0.1:{flip.proxy.port}) '
                "is read-only: every write would fail.",
            )
        ],
    )
    flip.proxy.move((flip.new.host, flip.new.port))
    assert found() == ("primary", [])
