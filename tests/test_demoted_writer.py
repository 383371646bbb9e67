"""A write alias never stays on a server that turned read-only (a demoted primary).

A throwaway primary (A) and its streaming standby (B); the write alias lists both hosts
with `target_session_attrs=read-write`. Writes run request after request; then A is
fenced (made read-only under its open connections, as a writer flip leaves the old
writer), B is promoted, and A is rebuilt as a standby of B on its own port. Django's
engine keeps its connection on A and every later write fails; ours fails the one write
that meets the demoted connection, drops it, and the next request writes on B.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import django
import pytest
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, InternalError, connections, transaction

from django_dbconfig import build_databases, check_databases
from django_dbconfig.backends.base.demotion import DemotedWriterError
from django_dbconfig.backends.base.health import Verdict
from tests.servers import PostgresReplica, PostgresServer, ServerUnavailable, serving, start_replica
from tests.test_health import DJANGO, Spy

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]

BEFORE, BETWEEN, AFTER = 5, 10, 10
# Django's pool exists from 5.1.
POOL = pytest.param(True, id="pool", marks=pytest.mark.skipif(django.VERSION < (5, 1), reason="no pool"))


class Switch(NamedTuple):
    """The two servers; `old` starts as the primary, `new` as its standby."""

    old: PostgresServer
    new: PostgresServer

    def cleanup(self) -> None:
        self.new.cleanup()
        self.old.cleanup()


def start_pair() -> Switch:
    primary = PostgresServer().start()
    try:
        primary.psql("CREATE TABLE writes (id serial PRIMARY KEY, n int)")
        primary.psql("ALTER TABLE writes OWNER TO app")
        return Switch(primary, start_replica(primary, apply_delay_ms=0))
    except BaseException:
        primary.cleanup()
        raise


@pytest.fixture
def pair() -> Iterator[Switch]:
    with serving("throwaway PostgreSQL primary/standby", start_pair) as servers:
        yield servers


def write_alias(tmp_path: Path, pair: Switch, *, pool: bool, engine: str | None = None) -> dict[str, Any]:
    entry = {
        "backend": "postgresql",
        "host": [pair.old.host, pair.new.host],
        "port": [pair.old.port, pair.new.port],
        "name": pair.old.dbname,
        "user": pair.old.user,
        "password": pair.old.password,
        "target_session_attrs": "read-write",
        "connect_timeout": 3,
    }
    if pool:
        entry["pool"] = {"min_size": 1, "max_size": 1, "timeout": 10}
    settings = dict(build_databases(tmp_path, overrides={"databases": {"default": entry}})["default"])
    if engine:
        settings["ENGINE"] = engine
    return settings


class Outcome(NamedTuple):
    at: float
    error: BaseException | None


def request(name: str, sql: str, params: list[Any] | None = None) -> Outcome:
    """One request with one statement."""
    request_started.send(sender=None)
    try:
        with connections[name].cursor() as cursor:
            cursor.execute(sql, params)
    except DatabaseError as exc:
        return Outcome(time.monotonic(), exc)
    finally:
        request_finished.send(sender=None)
    return Outcome(time.monotonic(), None)


def writes(name: str, count: int) -> list[Outcome]:
    return [request(name, "INSERT INTO writes (n) VALUES (%s)", [i]) for i in range(count)]


def fence_and_promote(pair: Switch) -> float:
    """Make the old primary read-only under its sessions, promote the standby; when it is writable."""
    old, new = pair.old, pair.new
    old.psql("ALTER SYSTEM SET default_transaction_read_only = on", dbname="postgres")
    old.psql("SELECT pg_reload_conf()", dbname="postgres")
    # The standby has everything the old primary wrote before it is promoted.
    lsn = old.psql("SELECT pg_current_wal_lsn()::text", dbname="postgres")[0][0]
    deadline = time.monotonic() + 30
    while not new.psql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn], dbname="postgres")[0][0]:
        if time.monotonic() > deadline:
            raise AssertionError("the standby never replayed the old primary's last write")
        time.sleep(0.05)
    new.psql("SELECT pg_promote(wait => true)", dbname="postgres")
    return time.monotonic()


def rebuild_old_as_standby(pair: Switch) -> PostgresReplica:
    """Stop the old primary and start a fresh base backup of the new one on its port."""
    port = pair.old.port
    pair.old.cleanup()
    standby = PostgresReplica(pair.new)
    standby.port = port
    try:
        standby.start()
        standby.wait_until_replicating()
    except ServerUnavailable:
        standby.cleanup()
        raise
    return standby


class Figures(NamedTuple):
    failed_before: int
    failed_after_switch: int
    failed_after_rebuild: int
    first_write_s: float | None
    errors: list[str]


def run_switch(tmp_path: Path, pair: Switch, register: Any, *, pool: bool, engine: str | None) -> Figures:
    name = f"demoted_{'pool' if pool else 'persistent'}_{'django' if engine else 'ours'}"
    register(name, write_alias(tmp_path, pair, pool=pool, engine=engine))
    before = writes(name, BEFORE)
    promoted_at = fence_and_promote(pair)
    between = writes(name, BETWEEN)
    standby = rebuild_old_as_standby(pair)
    try:
        after = writes(name, AFTER)
    finally:
        standby.cleanup()
    first = next((o.at - promoted_at for o in between + after if o.error is None), None)
    errors = [f"{type(o.error).__name__}: {o.error}" for o in between + after if o.error is not None]
    figures = Figures(
        sum(o.error is not None for o in before),
        sum(o.error is not None for o in between),
        sum(o.error is not None for o in after),
        first,
        errors,
    )
    print(
        f"\n{name}: writes before/after the switch/after the rebuild {BEFORE}/{BETWEEN}/{AFTER}, failed "
        f"{figures.failed_before}/{figures.failed_after_switch}/{figures.failed_after_rebuild}; "
        f"first successful write {first if first is None else round(first, 3)} s after the promotion"
    )
    return figures


@pytest.mark.parametrize("pool", [pytest.param(False, id="persistent"), POOL])
def test_a_demoted_writer_fails_one_write_then_the_alias_writes_on_the_new_primary(
    tmp_path: Path, pair: Switch, register: Any, pool: bool
) -> None:
    figures = run_switch(tmp_path, pair, register, pool=pool, engine=None)
    assert (figures.failed_before, figures.failed_after_switch, figures.failed_after_rebuild) == (0, 1, 0)
    (error,) = figures.errors
    assert error.startswith(
        f'DemotedWriterInternalError: Database "demoted_{"pool" if pool else "persistent"}_ours" is meant '
        "for writes, but its server was demoted (it is read-only (default_transaction_read_only is on)): "
        "the connection was closed and the next query connects again. The server said: cannot execute "
        "INSERT in a read-only transaction"
    ), error


@pytest.mark.parametrize("pool", [pytest.param(False, id="persistent"), POOL])
def test_django_engine_keeps_the_demoted_writer_until_the_process_restarts(
    tmp_path: Path, pair: Switch, register: Any, pool: bool
) -> None:
    """The control: every write after the switch fails on the connection to the old primary,
    until the rebuild restarts that server and so closes the connection."""
    figures = run_switch(tmp_path, pair, register, pool=pool, engine=DJANGO["postgresql"])
    assert (figures.failed_before, figures.failed_after_switch) == (0, BETWEEN)


def test_the_error_keeps_django_class_and_the_next_query_of_the_request_reconnects(
    tmp_path: Path, pair: Switch, register: Any
) -> None:
    connection = register("demoted_in_request", write_alias(tmp_path, pair, pool=False))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    fence_and_promote(pair)
    with pytest.raises(InternalError) as caught, connection.cursor() as cursor:
        cursor.execute("INSERT INTO writes (n) VALUES (1)")
    assert isinstance(caught.value, DemotedWriterError)
    assert getattr(caught.value.__cause__, "sqlstate", None) == "25006"
    assert connection.connection is None
    # The same request goes on: the next query connects to the new primary.
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO writes (n) VALUES (2) RETURNING inet_server_port()")
        assert cursor.fetchone()[0] == pair.new.port


@pytest.mark.parametrize("pool", [pytest.param(False, id="persistent"), POOL])
def test_inside_atomic_the_demoted_writer_error_leaves_the_block_and_the_next_block_writes(
    tmp_path: Path, pair: Switch, register: Any, pool: bool
) -> None:
    name = f"demoted_atomic_{'pool' if pool else 'persistent'}"
    connection = register(name, write_alias(tmp_path, pair, pool=pool))
    with transaction.atomic(using=name), connection.cursor() as cursor:
        cursor.execute("INSERT INTO writes (n) VALUES (1)")
    fence_and_promote(pair)
    with pytest.raises(DemotedWriterError), transaction.atomic(using=name), connection.cursor() as cursor:
        cursor.execute("INSERT INTO writes (n) VALUES (2)")
    assert not connection.in_atomic_block
    with transaction.atomic(using=name), connection.cursor() as cursor:
        cursor.execute("INSERT INTO writes (n) VALUES (3) RETURNING inet_server_port()")
        assert cursor.fetchone()[0] == pair.new.port


def test_a_read_before_the_first_write_notices_the_demotion_without_a_failed_write(
    tmp_path: Path, pair: Switch, register: Any
) -> None:
    """The old primary reports default_transaction_read_only=on with the answer to any query:
    the next request's health check drops the connection without a round trip of its own."""
    connection = register("demoted_read_first", write_alias(tmp_path, pair, pool=False))
    assert request("demoted_read_first", "SELECT 1").error is None
    assert request("demoted_read_first", "SELECT 1").error is None
    spy = Spy(connection)
    fence_and_promote(pair)
    assert request("demoted_read_first", "SELECT 1").error is None
    outcome = request("demoted_read_first", "INSERT INTO writes (n) VALUES (1)")
    assert outcome.error is None
    assert (spy.verdicts, spy.calls) == ([Verdict.HEALTHY, Verdict.DEMOTED], 0)


@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool exists from 5.1")
def test_a_pooled_connection_of_a_demoted_writer_is_dropped_at_checkout_without_a_failed_write(
    tmp_path: Path, pair: Switch, register: Any
) -> None:
    """The pool's checkout check reads the same ParameterStatus: the connection that learnt of the
    fence answering a read is discarded at the next checkout, and the write goes to the new primary."""
    register("demoted_pool_read_first", write_alias(tmp_path, pair, pool=True))
    assert request("demoted_pool_read_first", "SELECT 1").error is None
    fence_and_promote(pair)
    assert request("demoted_pool_read_first", "SELECT 1").error is None
    request_started.send(sender=None)
    try:
        with connections["demoted_pool_read_first"].cursor() as cursor:
            cursor.execute("INSERT INTO writes (n) VALUES (1) RETURNING inet_server_port()")
            assert cursor.fetchone()[0] == pair.new.port
    finally:
        request_finished.send(sender=None)


def test_a_session_that_chose_read_only_keeps_its_connection(
    tmp_path: Path, pair: Switch, register: Any
) -> None:
    """SET TRANSACTION READ ONLY is the session's own choice: the error is Django's, the connection stays."""
    connection = register("own_read_only", write_alias(tmp_path, pair, pool=False))
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    raw = connection.connection
    with pytest.raises(InternalError) as caught, transaction.atomic(using="own_read_only"):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION READ ONLY")
            cursor.execute("INSERT INTO writes (n) VALUES (1)")
    assert not isinstance(caught.value, DemotedWriterError)
    assert connection.connection is raw


def dbcheck(alias: str) -> dict[str, Any]:
    (row,) = check_databases([alias])["databases"]
    return {
        "role": (row["server"] or {}).get("role"),
        "port": (row["server"] or {}).get("port"),
        "problems": [(p["id"], p["message"]) for p in row["problems"]],
    }


def test_dbcheck_reports_the_role_and_an_error_when_a_write_alias_reaches_a_standby_or_read_only_server(
    tmp_path: Path, pair: Switch, register: Any
) -> None:
    entry = write_alias(tmp_path, pair, pool=False)
    one_host = {"OPTIONS": {**entry["OPTIONS"], "target_session_attrs": "any"}}
    register("listed", entry)
    register("on_standby", entry | one_host | {"HOST": pair.new.host, "PORT": pair.new.port})
    register("on_old", entry | one_host | {"HOST": pair.old.host, "PORT": pair.old.port})
    assert dbcheck("listed") == {"role": "primary", "port": pair.old.port, "problems": []}
    assert dbcheck("on_standby") == {
        "role": "standby",
        "port": pair.new.port,
        "problems": [
            (
                "dbconfig.E160",
                f'"on_standby" is meant for writes, but the server it reached (127.0.0.1:{pair.new.port}) '
                "is a standby: every write would fail.",
            )
        ],
    }
    fence_and_promote(pair)
    assert dbcheck("listed") == {"role": "primary", "port": pair.new.port, "problems": []}
    assert dbcheck("on_old") == {
        "role": "primary",
        "port": pair.old.port,
        "problems": [
            (
                "dbconfig.E160",
                f'"on_old" is meant for writes, but the server it reached (127.0.0.1:{pair.old.port}) '
                "is read-only: every write would fail.",
            )
        ],
    }


THREADS, LOAD_S = 4, 1.5


@pytest.mark.parametrize("pool", [pytest.param(False, id="persistent"), POOL])
def test_under_load_only_the_writes_in_flight_fail_after_the_promotion(
    tmp_path: Path, pair: Switch, register: Any, pool: bool
) -> None:
    """Four threads write request after request while the writer is fenced and the standby
    promoted. Writes between the fence and the promotion have no writer to go to; after the
    promotion, at most one write per thread fails: the one that met the demoted connection."""
    name = f"load_{'pool' if pool else 'persistent'}"
    entry = write_alias(tmp_path, pair, pool=pool)
    if pool:
        entry["OPTIONS"]["pool"] = {"min_size": THREADS, "max_size": THREADS, "timeout": 10}
    register(name, entry)
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            while not stop.is_set():
                outcomes.append(request(name, "INSERT INTO writes (n) VALUES (1)"))
                time.sleep(0.005)
        finally:
            connections[name].close()

    threads = [threading.Thread(target=writer) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(LOAD_S)
        fenced_at = time.monotonic()
        promoted_at = fence_and_promote(pair)
        time.sleep(LOAD_S)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    before = [o for o in outcomes if o.at < fenced_at]
    during = [o for o in outcomes if fenced_at <= o.at < promoted_at]
    after = [o for o in outcomes if o.at >= promoted_at]
    failed_after = [o for o in after if o.error is not None]
    first = min((o.at for o in after if o.error is None), default=None)
    print(
        f"\n{name}: {THREADS} threads, writes before/during/after the switch "
        f"{len(before)}/{len(during)}/{len(after)}, failed {sum(o.error is not None for o in before)}/"
        f"{sum(o.error is not None for o in during)}/{len(failed_after)}; switch (fence to promotion) "
        f"{promoted_at - fenced_at:.3f} s; first successful write "
        f"{None if first is None else round(first - promoted_at, 3)} s after the promotion"
    )
    assert not any(o.error for o in before)
    assert len(failed_after) <= THREADS, [str(o.error) for o in failed_after]
    assert len(after) - len(failed_after) >= THREADS  # writes went on, on the new primary
    assert all(isinstance(o.error, DemotedWriterError) for o in failed_after), failed_after
