"""Replica reads that are correct, on real PostgreSQL standbys: transactions read the primary,
one request reads one replica, and a replica that stops under request load costs no request."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from django.core.signals import request_finished, request_started
from django.db import connections, transaction
from django.test import override_settings

from django_dbconfig import load_config
from django_dbconfig.routers import DatabaseRouter, _state
from tests.apps.shop.models import Order
from tests.read_your_writes_app import site_settings
from tests.replication_servers import set_apply_delay
from tests.servers import PostgresReplica, PostgresServer, ReplicaPair, serving, start_replica
from tests.test_router import registered

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]
logger = logging.getLogger(__name__)

PRIMARY, R1, R2 = "cr_primary", "cr_r1", "cr_r2"


class Servers(NamedTuple):
    primary: PostgresServer
    r1: PostgresReplica
    r2: PostgresReplica


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def servers(pg_lag_pair: ReplicaPair) -> Iterator[Servers]:
    """A primary, its standby r1 (apply delay set per test) and a second standby r2; shop_order on all."""
    primary, r1 = pg_lag_pair
    primary.psql("CREATE TABLE shop_order (id bigserial PRIMARY KEY, reference varchar(40) NOT NULL)")
    primary.psql("GRANT ALL ON shop_order, shop_order_id_seq TO app")
    with serving("a second PostgreSQL standby", lambda: start_replica(primary, apply_delay_ms=0)) as r2:
        for standby in (r1, r2):
            wait_for(lambda s=standby: bool(s.psql("SELECT to_regclass('shop_order')")[0][0]), "shop_order")
        yield Servers(primary, r1, r2)


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    _state.set(None)
    yield
    _state.set(None)


def alias_keys(server: PostgresServer, **extra: Any) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, **extra}


@contextlib.contextmanager
def routed(
    tmp_path: Path,
    servers: Servers,
    django_db_blocker: Any,
    *,
    replicas: tuple[str, ...] = (R1,),
    **replica: Any,
) -> Iterator[DatabaseRouter]:
    """shop -> cr_primary, read from the named replicas (keys of `replica` on each)."""
    primary = servers.primary
    databases: dict[str, Any] = {
        PRIMARY: {
            "backend": "postgresql",
            "name": primary.dbname,
            "user": primary.user,
            "password": primary.password,
            "connect_timeout": "2s",
            **alias_keys(primary),
        }
    }
    for name in replicas:
        server = servers.r1 if name == R1 else servers.r2
        databases[name] = {"replica_of": PRIMARY, **alias_keys(server), **replica}
    config = load_config(tmp_path, environ={}, overrides={"databases": databases})
    with routing(config, PRIMARY, django_db_blocker) as router:
        yield router


@contextlib.contextmanager
def routing(config: Any, primary: str, django_db_blocker: Any) -> Iterator[DatabaseRouter]:
    """The config's aliases registered, `shop` routed to `primary` and its replicas, for the block."""
    entries = config.databases()
    with django_db_blocker.unblock(), registered(entries):
        router = DatabaseRouter(routes={"shop": primary}, replicas=config.replicas, databases=entries)
        try:
            with override_settings(DATABASE_ROUTERS=[router]):
                yield router
        finally:
            router.stop_measuring()
            close_connections(entries)


def close_connections(aliases: Any = (PRIMARY, R1, R2)) -> None:
    for alias in aliases:
        if alias in connections.settings:
            with contextlib.suppress(Exception):
                connections[alias].close()


def port_of_read() -> int:
    """The port of the server that answered a routed read of Order (the server says it)."""
    rows = list(Order.objects.raw("SELECT 1 AS id, inet_server_port()::text AS reference"))
    return int(rows[0].reference)


def found(reference: str) -> bool:
    return Order.objects.filter(reference=reference).exists()


@contextlib.contextmanager
def a_request() -> Iterator[None]:
    request_started.send(sender=None)
    try:
        yield
    finally:
        request_finished.send(sender=None)


# ----------------------------------------------------------------------------- transactions


def test_a_read_inside_atomic_goes_to_the_primary_before_any_write(
    tmp_path: Path, servers: Servers, django_db_blocker: Any
) -> None:
    primary, r1 = servers.primary, servers.r1
    with routed(tmp_path, servers, django_db_blocker), contextlib.ExitStack() as stack:
        set_apply_delay(r1, 3000)
        stack.callback(set_apply_delay, r1, 0)
        reference = uuid.uuid4().hex[:12]
        # Committed on the primary by someone else; the standby applies it 3 s later.
        primary.psql("INSERT INTO shop_order (reference) VALUES (%s)", [reference])
        with a_request():
            assert [port_of_read(), found(reference)] == [r1.port, False]
            with transaction.atomic(using=PRIMARY):
                assert [port_of_read(), found(reference)] == [primary.port, True]
                with transaction.atomic(using=PRIMARY):  # a savepoint
                    assert port_of_read() == primary.port
                assert port_of_read() == primary.port  # the outer block is still open
            # The block is closed, nothing was written: back to this request's replica.
            assert [port_of_read(), found(reference)] == [r1.port, False]


def test_an_open_atomic_block_moves_only_its_own_threads_reads(
    tmp_path: Path, servers: Servers, django_db_blocker: Any
) -> None:
    primary, r1 = servers.primary, servers.r1
    other: list[int] = []

    def read_elsewhere() -> None:
        try:
            with a_request():
                other.append(port_of_read())
        finally:
            close_connections()

    with routed(tmp_path, servers, django_db_blocker), a_request(), transaction.atomic(using=PRIMARY):
        assert port_of_read() == primary.port
        thread = threading.Thread(target=read_elsewhere)
        thread.start()
        thread.join(30)
    assert other == [r1.port]


def test_a_transaction_on_the_primary_that_fails_leaves_reads_on_the_replica_afterwards(
    tmp_path: Path, servers: Servers, django_db_blocker: Any
) -> None:
    primary, r1 = servers.primary, servers.r1
    with routed(tmp_path, servers, django_db_blocker), a_request():
        with pytest.raises(ZeroDivisionError), transaction.atomic(using=PRIMARY):
            assert port_of_read() == primary.port
            _ = 1 / 0
        assert port_of_read() == r1.port


# ----------------------------------------------------------------------------- one replica per request


def test_each_request_reads_from_one_replica_and_requests_spread_over_both(
    tmp_path: Path, servers: Servers, django_db_blocker: Any
) -> None:
    ports = []
    with routed(tmp_path, servers, django_db_blocker, replicas=(R1, R2)):
        for _ in range(6):
            with a_request():
                # A list and its count, a parent and its children: one server each time.
                ports.append({port_of_read() for _ in range(5)})
    assert [len(seen) for seen in ports] == [1] * 6
    assert set.union(*ports) == {servers.r1.port, servers.r2.port}


# ----------------------------------------------------------------------------- a replica that stops


class Outcome(NamedTuple):
    at: float
    port: int | None  # None: the request failed
    seconds: float


def load(stop: threading.Event, outcomes: list[Outcome], started: float) -> None:
    """One worker: requests back to back, each reading once, on persistent connections."""
    try:
        while not stop.is_set():
            begun = time.monotonic()
            try:
                with a_request():
                    port: int | None = port_of_read()
            except Exception as exc:
                logger.warning("a request failed: %s: %s", type(exc).__name__, str(exc).splitlines()[:1])
                port = None
            outcomes.append(Outcome(begun - started, port, time.monotonic() - begun))
            time.sleep(0.01)
    finally:
        close_connections()


def standby_processes(standby: PostgresServer) -> list[int]:
    postmaster = int((standby.data_dir / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False)
    return [postmaster, *(int(pid) for pid in children.stdout.split())]


def signal_all(processes: list[int], signum: int) -> None:
    for pid in processes:
        with contextlib.suppress(ProcessLookupError):  # a session that ended meanwhile
            os.kill(pid, signum)


@pytest.mark.parametrize(
    ("mode", "max_lag", "conn_max_age"),
    [
        ("fast", None, 60),
        ("immediate", None, 60),
        ("fast", "5s", 60),
        ("sigstop", None, 60),
        ("sigstop", "5s", 60),
        ("sigstop", None, 0),
    ],
)
def test_a_replica_stopped_under_request_load_fails_no_request_and_gets_reads_again(
    tmp_path: Path,
    servers: Servers,
    django_db_blocker: Any,
    mode: str,
    max_lag: str | None,
    conn_max_age: int,
) -> None:
    """4 threads make requests while r1 stops (or hangs) for 4 s, then comes back."""
    primary, r1 = servers.primary, servers.r1
    keys: dict[str, Any] = {"conn_max_age": conn_max_age, "conn_health_checks": True}
    if max_lag is not None:
        keys["max_replica_lag"] = max_lag
    outcomes: list[Outcome] = []
    stop = threading.Event()
    with routed(tmp_path, servers, django_db_blocker, **keys) as router:
        started = time.monotonic()
        workers = [threading.Thread(target=load, args=(stop, outcomes, started)) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            wait_for(lambda: any(o.port == r1.port for o in outcomes[-8:]), "reads on the replica")
            time.sleep(0.5)
            processes = standby_processes(r1)
            if mode == "sigstop":
                signal_all(processes, signal.SIGSTOP)
            else:
                r1.stop(mode)  # returns once the server is down
            # From here on the replica is refused (or hung): a request begun later was not in flight.
            stopped_at = time.monotonic() - started
            time.sleep(4)
            if mode == "sigstop":
                signal_all(processes, signal.SIGCONT)
            else:
                r1.start()
            up_at = time.monotonic() - started
            back = wait_for(
                lambda: any(o.port == r1.port and o.at > up_at for o in list(outcomes)),
                "reads to come back to the replica",
                timeout=30,
            )
        finally:
            stop.set()
            for worker in workers:
                worker.join(60)
            if mode == "sigstop":
                signal_all(standby_processes(r1), signal.SIGCONT)
            elif not r1.running:
                r1.start()
            r1.wait_until_replicating()
        assert R1 not in router._dead  # marked unfit while refused, fit again once it answered
    during = [o for o in outcomes if stopped_at <= o.at < up_at]
    in_flight = [o for o in outcomes if o.port is None and o.at < stopped_at]
    failed = [o for o in outcomes if o.port is None and o.at >= stopped_at]
    logger.warning(
        "replica stopped (%s, max_replica_lag %s, conn_max_age %s): %d requests in all, %d begun while it was down, "
        "%d of those failed, %d served by the primary, slowest %.2f s; %d failed in flight as it stopped; "
        "reads back on the replica %.2f s after it was up",
        mode,
        max_lag,
        conn_max_age,
        len(outcomes),
        len(during),
        len(failed),
        sum(1 for o in during if o.port == primary.port),
        max(o.seconds for o in during),
        len(in_flight),
        back,
    )
    assert during, "no request ran while the replica was down"
    # A request already reading from the replica as it stops may fail: at most one per worker.
    assert len(in_flight) <= 4
    assert failed == []
    assert {o.port for o in during} <= {primary.port, r1.port}


# ----------------------------------------------------------------------------- read-your-writes across requests

SITE_ROUTES = {"auth": PRIMARY, "sessions": PRIMARY, "contenttypes": PRIMARY, "shop": PRIMARY}
PIN_SECONDS = 4.0  # the standby applies each write 2 s late


@contextlib.contextmanager
def other_process(databases: dict[str, Any], *, pin: bool) -> Iterator[Callable[[dict[str, str]], Any]]:
    """Another process serving the site: ask(cookies) -> its answer to GET /whoami/."""
    import json
    import sys

    site = site_settings(databases, SITE_ROUTES, pin=pin, pin_seconds=PIN_SECONDS)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.read_your_writes_app"],
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "READ_YOUR_WRITES_SETTINGS": json.dumps(site)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline().strip() == "ready"

        def ask(cookies: dict[str, str]) -> Any:
            process.stdin.write(json.dumps(cookies) + "\n")  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
            return json.loads(process.stdout.readline())  # type: ignore[union-attr]

        yield ask
    finally:
        process.stdin.close()
        process.wait(30)


def test_after_a_login_and_redirect_another_process_reads_the_session_from_the_primary_with_the_pin_cookie(
    tmp_path: Path, servers: Servers, django_db_blocker: Any
) -> None:
    from django.conf import settings
    from django.contrib.auth.models import Group, Permission, User
    from django.contrib.contenttypes.models import ContentType
    from django.test import Client

    primary, r1 = servers.primary, servers.r1
    answers: dict[bool, list[Any]] = {}
    installed = [*settings.INSTALLED_APPS, "django.contrib.sessions"]
    with (
        routed(tmp_path, servers, django_db_blocker) as router,
        override_settings(
            INSTALLED_APPS=installed,
            PASSWORD_HASHERS=site_settings({}, {}, pin=False, pin_seconds=0)["PASSWORD_HASHERS"],
        ),
        contextlib.ExitStack() as cleanup,
    ):
        from django.contrib.sessions.models import Session

        site_router = DatabaseRouter(
            routes=SITE_ROUTES, replicas={PRIMARY: (R1,)}, databases=dict(connections.settings)
        )
        cleanup.callback(
            primary.psql,
            "DROP TABLE IF EXISTS django_session, auth_user_user_permissions, auth_user_groups, "
            "auth_group_permissions, auth_user, auth_group, auth_permission, django_content_type CASCADE",
        )
        with connections[PRIMARY].schema_editor() as editor:
            for model in (ContentType, Permission, Group, User, Session):
                editor.create_model(model)
        User.objects.db_manager(PRIMARY).create_user("alice", password="alice-pw")
        wait_for(
            lambda: bool(r1.psql("SELECT to_regclass('auth_user') IS NOT NULL")[0][0]),
            "the tables on the standby",
        )
        wait_for(lambda: bool(r1.psql("SELECT count(*) FROM auth_user")[0][0]), "the user on the standby")
        set_apply_delay(r1, 2000)
        cleanup.callback(set_apply_delay, r1, 0)
        databases = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
            PRIMARY: connections.settings[PRIMARY],
            R1: connections.settings[R1],
        }
        assert router is not None
        for pin in (False, True):
            site = site_settings({}, SITE_ROUTES, pin=pin, pin_seconds=PIN_SECONDS)
            del site["DATABASES"]
            with (
                override_settings(DATABASE_ROUTERS=[site_router], **site),
                other_process(databases, pin=pin) as ask,
            ):
                answers[pin] = []
                for _ in range(5):
                    client = Client()
                    response = client.post("/login/", {"username": "alice", "password": "alice-pw"})
                    assert [response.status_code, response["Location"]] == [302, "/whoami/"]
                    logged_in_at = time.monotonic()
                    # The redirect's request, on the other process, with the cookies the browser got.
                    answers[pin].append(ask({name: morsel.value for name, morsel in client.cookies.items()}))
                if pin:
                    # After the window the same client reads from the replica, which has the session by then.
                    time.sleep(max(0.0, logged_in_at + PIN_SECONDS + 0.5 - time.monotonic()))
                    after_window = ask({name: morsel.value for name, morsel in client.cookies.items()})
                    assert "dbconfig_pin" in client.cookies
    stale_off = sum(1 for answer in answers[False] if answer["user"] is None)
    stale_on = sum(1 for answer in answers[True] if answer["user"] is None)
    logger.warning(
        "login then redirect to another process, standby 2 s behind: logged out (stale session read) "
        "%d of 5 without the middleware, %d of 5 with it",
        stale_off,
        stale_on,
    )
    # Without the middleware the redirect reads the replica, which has no session yet: logged out.
    assert [answer["port"] for answer in answers[False]] == [r1.port] * 5
    assert stale_off >= 3
    # With it, the signed cookie sends the session read to the primary.
    assert answers[True] == [{"user": "alice", "port": primary.port}] * 5
    assert after_window == {"user": "alice", "port": r1.port}


# ----------------------------------------------------------------------------- runtime replicas


def test_a_tenants_runtime_replica_gets_its_reads_with_the_same_pins_and_fallback(
    servers: Servers, django_db_blocker: Any
) -> None:
    from django_dbconfig import add_database, remove_database
    from django_dbconfig.routers import use_database

    primary, r1 = servers.primary, servers.r1
    router = DatabaseRouter(routes={}, replicas={}, databases=dict.fromkeys(("default",)))
    tenant = {
        "backend": "postgresql",
        "name": primary.dbname,
        "user": primary.user,
        "password": primary.password,
        "connect_timeout": "2s",
        "conn_max_age": 60,
        **alias_keys(primary),
    }
    ports: dict[str, Any] = {}
    with (
        django_db_blocker.unblock(),
        override_settings(DATABASE_ROUTERS=[router]),
        contextlib.ExitStack() as stack,
    ):
        add_database("cr_tenant", tenant)
        stack.callback(remove_database, "cr_tenant")
        # Added after the router was made: the router hears of it.
        add_database("cr_tenant_r", alias_keys(r1), replica_of="cr_tenant")
        stack.callback(remove_database, "cr_tenant_r")
        stack.callback(router.stop_measuring)
        with use_database("cr_tenant"):
            with a_request():
                ports["read"] = port_of_read()
                with transaction.atomic(using="cr_tenant"):
                    ports["in atomic"] = port_of_read()
                Order.objects.create(reference=uuid.uuid4().hex[:12])
                ports["after a write"] = port_of_read()
            r1.stop("fast")
            try:
                with a_request():
                    ports["replica down"] = port_of_read()
            finally:
                r1.start()
                r1.wait_until_replicating()
            wait_for(lambda: a_request_port() == r1.port, "reads to come back to the runtime replica")
        for alias in ("cr_tenant", "cr_tenant_r"):
            connections[alias].close()
    assert ports == {
        "read": r1.port,
        "in atomic": primary.port,
        "after a write": primary.port,
        "replica down": primary.port,
    }


def a_request_port() -> int:
    with a_request():
        return port_of_read()
