"""Replicas on real PostgreSQL standbys (pg_basebackup -R): inheritance over TLS, dbcheck's
standby and lag report, lag-aware routing, a stopped replica, and failover between hosts."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import connections
from django.test import override_settings

from django_dbconfig import build_databases, load_config
from django_dbconfig.conf.config import last_config
from django_dbconfig.routers import DatabaseRouter, _state, reset_pins
from tests.apps.shop.models import Order
from tests.replication_servers import set_apply_delay, standby_lag_s
from tests.servers import PostgresReplica, PostgresServer, ReplicaPair, TLSMaterial, free_port
from tests.test_dbcheck import PASSWORD, by_alias, dbcheck, dbcheck_json, ids
from tests.test_router import registered

pytestmark = [pytest.mark.postgresql, pytest.mark.slow]
logger = logging.getLogger(__name__)

PRIMARY, REPLICA = "lp_primary", "lp_replica"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
    """Poll until `condition` holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def app(server: PostgresServer, **extra: Any) -> dict[str, Any]:
    return {
        "backend": "postgresql",
        "host": server.host,
        "port": server.port,
        "name": server.dbname,
        "user": server.user,
        "password": server.password,
        "connect_timeout": "3s",
        "conn_max_age": 0,
        **extra,
    }


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    _state.set(None)
    yield
    _state.set(None)


# ----------------------------------------------------------- inheritance, over TLS


def test_a_routed_read_through_the_replica_finds_a_table_in_the_primarys_schema_over_tls(
    tmp_path: Path,
    pg_tls_server: PostgresServer,
    pg_tls_standby: PostgresReplica,
    tls_ca: TLSMaterial,
    django_db_blocker: Any,
) -> None:
    primary, standby = pg_tls_server, pg_tls_standby
    schema = f"Shop {uuid.uuid4().hex[:8]}"  # capitals and a space: only a quoted search_path finds it
    primary.psql(f'CREATE SCHEMA "{schema}" AUTHORIZATION app')
    config = load_config(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "tp": {
                    **app(primary, host="localhost"),
                    "sslmode": "verify-full",
                    "sslrootcert": str(tls_ca.ca_path),
                    "search_path": [schema, "public"],
                    "statement_timeout": "20s",
                },
                # Only where the replica is: everything else comes from "tp".
                "tp_replica": {"host": "localhost", "port": standby.port, "replica_of": "tp"},
            }
        },
    )
    databases = config.databases()
    router = DatabaseRouter(routes={"shop": "tp"}, replicas=config.replicas, databases=databases)
    reference = uuid.uuid4().hex[:12]
    try:
        with django_db_blocker.unblock(), registered(databases), override_settings(DATABASE_ROUTERS=[router]):
            with connections["tp"].schema_editor() as editor:
                editor.create_model(Order)
            Order.objects.db_manager("tp").create(reference=reference)  # a write that pins nothing
            table = f'"{schema}".shop_order'

            def replayed() -> bool:
                if not standby.psql("SELECT to_regclass(%s) IS NOT NULL", [table])[0][0]:
                    return False
                return bool(
                    standby.psql(f"SELECT count(*) FROM {table} WHERE reference = %s", [reference])[0][0]
                )

            wait_for(replayed, "the standby to replay the table and its row")
            reset_pins()
            query = Order.objects.filter(reference=reference)
            assert [query.db, query.count()] == ["tp_replica", 1]
            with connections["tp_replica"].cursor() as cursor:
                cursor.execute(
                    "SELECT pg_is_in_recovery(), ssl, current_schema(), current_setting('statement_timeout') "
                    "FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                )
                assert cursor.fetchone() == (True, True, schema, "20s")

            status, result = dbcheck_json(databases, "--database", "tp", "--database", "tp_replica")
            reports = by_alias(result)
            assert status == 0, result
            replica = reports["tp_replica"]
            assert [replica["tls"]["in_use"], replica["tls"]["verified"]] == [True, True]
            assert replica["schemas"] == {"expected": [schema, "public"], "missing": [], "created": []}
            assert replica["settings"]["read_only"] == {"expected": True, "actual": True, "ok": True}
            assert replica["server"] == {"host": "localhost", "port": standby.port, "role": "standby"}
            assert replica["replication"]["standby"] is True
            assert reports["tp"]["server"]["role"] == "primary"
    finally:
        primary.psql(f'DROP SCHEMA "{schema}" CASCADE')


# ----------------------------------------------------------- a primary with a standby whose lag we set


@pytest.fixture(scope="module")
def lag_table(pg_lag_pair: ReplicaPair) -> Iterator[ReplicaPair]:
    """shop_order on the primary (and, once replayed, on the standby); a ticks table to make WAL."""
    primary, standby = pg_lag_pair
    primary.psql("CREATE TABLE shop_order (id bigserial PRIMARY KEY, reference varchar(40) NOT NULL)")
    primary.psql("GRANT ALL ON shop_order, shop_order_id_seq TO app")
    primary.psql("CREATE TABLE ticks (at timestamptz NOT NULL DEFAULT now())")
    wait_for(lambda: bool(standby.psql("SELECT to_regclass('ticks')")[0][0]), "the standby to get the tables")
    yield pg_lag_pair


@contextlib.contextmanager
def ticking(primary: PostgresServer, every: float = 0.2) -> Iterator[None]:
    """Commit on the primary every `every` seconds: a delayed standby then lags measurably."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every):
            primary.psql("INSERT INTO ticks DEFAULT VALUES")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


@contextlib.contextmanager
def delayed(standby: PostgresReplica, ms: int) -> Iterator[None]:
    set_apply_delay(standby, ms)
    try:
        yield
    finally:
        set_apply_delay(standby, 0)


def lag_config(tmp_path: Path, pair: ReplicaPair, **replica: Any) -> Any:
    """The config of the pair, built as settings.py would (dbcheck then compares with it)."""
    build_databases(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                PRIMARY: app(pair.primary),
                REPLICA: {
                    "host": pair.replica.host,
                    "port": pair.replica.port,
                    "replica_of": PRIMARY,
                    **replica,
                },
            }
        },
    )
    return last_config()


def test_dbcheck_reports_the_standby_and_its_lag(tmp_path: Path, lag_table: ReplicaPair) -> None:
    databases = lag_config(tmp_path, lag_table, max_replica_lag="30s").databases()
    status, result = dbcheck_json(databases)
    reports = by_alias(result)
    assert status == 0, result
    replica = reports[REPLICA]
    lag = replica["replication"].pop("lag_s")
    assert isinstance(lag, (int, float)) and 0 <= lag < 5
    assert replica["replication"] == {"primary": PRIMARY, "standby": True, "max_lag_s": 30.0}
    assert replica["server"] == {"host": "127.0.0.1", "port": lag_table.replica.port, "role": "standby"}
    assert reports[PRIMARY]["server"]["role"] == "primary"
    assert reports[PRIMARY]["replication"] is None
    status, text = dbcheck(databases)
    lines = [line.strip() for line in text.splitlines()]
    assert f"server    127.0.0.1:{lag_table.replica.port} (standby)" in lines
    assert next(line for line in lines if line.startswith("replica   of")).startswith(
        f"replica   of {PRIMARY}: standby, lag "
    )
    assert lines[-1] == "All 3 databases passed."  # with the built-in SQLite default


def test_a_replica_lagging_more_than_max_replica_lag_is_an_error(
    tmp_path: Path, lag_table: ReplicaPair
) -> None:
    databases = lag_config(tmp_path, lag_table, max_replica_lag="1s").databases()
    with delayed(lag_table.replica, 4000), ticking(lag_table.primary):
        wait_for(lambda: standby_lag_s(lag_table.replica) > 2.0, "the standby to lag 2 s")
        status, result = dbcheck_json(databases, "--database", REPLICA)
    replica = by_alias(result)[REPLICA]
    assert status == 1
    assert ids(replica) == ["dbconfig.E121"]
    assert replica["replication"]["lag_s"] > 1.0
    message = replica["problems"][0]["message"]
    assert message.startswith("The standby lags ") and message.endswith(
        "s behind, more than max_replica_lag (1s)."
    )


def test_a_replica_alias_whose_server_is_a_writable_primary_is_an_error(
    tmp_path: Path, lag_table: ReplicaPair
) -> None:
    primary = lag_table.primary
    config = load_config(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                PRIMARY: app(primary),
                REPLICA: {"port": primary.port, "host": primary.host, "replica_of": PRIMARY},
            }
        },
    )
    status, result = dbcheck_json(config.databases(), "--database", REPLICA)
    replica = by_alias(result)[REPLICA]
    assert status == 1
    # On a writable primary the replica's role can write, read-only session or not: W104 too.
    assert [problem["id"] for problem in replica["problems"][1:]] == ["dbconfig.W104"]
    assert replica["problems"][:1] == [
        {
            "level": "error",
            "id": "dbconfig.E120",
            "message": f'"{REPLICA}" is a replica of "{PRIMARY}", but its server is a writable primary, not a standby.',
            "hint": f'Point "{REPLICA}" at a standby of "{PRIMARY}" (host and port), or remove its replica_of if it '
            f'is meant to be a primary: reads routed there would not be a copy of "{PRIMARY}".',
        }
    ]
    assert replica["replication"] == {"primary": PRIMARY, "standby": False, "lag_s": None, "max_lag_s": None}
    assert replica["server"]["role"] == "primary"


# ----------------------------------------------------------- lag-aware routing


@contextlib.contextmanager
def lag_aware_router(
    tmp_path: Path, pair: ReplicaPair, django_db_blocker: Any, **replica: Any
) -> Iterator[DatabaseRouter]:
    config = lag_config(tmp_path, pair, **replica)
    databases = config.databases()
    with django_db_blocker.unblock(), registered(databases):
        router = DatabaseRouter(routes={"shop": PRIMARY}, replicas=config.replicas, databases=databases)
        try:
            with override_settings(DATABASE_ROUTERS=[router]):
                yield router
        finally:
            router.stop_measuring()


def request() -> tuple[str, int]:
    """One request's read: where it went and what it found (connections closed at its end)."""
    request_started.send(sender=None)
    try:
        query = Order.objects.all()
        return query.db, query.count()
    finally:
        request_finished.send(sender=None)


def test_reads_leave_a_replica_lagging_more_than_max_replica_lag_and_come_back(
    tmp_path: Path, lag_table: ReplicaPair, django_db_blocker: Any
) -> None:
    primary, standby = lag_table
    with lag_aware_router(tmp_path, lag_table, django_db_blocker, max_replica_lag="1s") as router:
        wait_for(lambda: request()[0] == REPLICA, "the first measurement to send reads to the replica")
        assert router.replica_lag(REPLICA) is not None and router.replica_lag(REPLICA) < 1.0
        with ticking(primary):
            set_apply_delay(standby, 5000)
            try:
                lagging = time.monotonic() + wait_for(
                    lambda: standby_lag_s(standby) > 1.0, "the standby to lag 1 s"
                )
                wait_for(lambda: request()[0] == PRIMARY, "reads to leave the lagging replica")
                left = time.monotonic() - lagging
                # While it lags, every read goes to the primary.
                assert {request()[0] for _ in range(20)} == {PRIMARY}
                assert router.replica_lag(REPLICA) > 1.0
            finally:
                set_apply_delay(standby, 0)
            caught_up = time.monotonic() + wait_for(
                lambda: standby_lag_s(standby) <= 1.0, "the standby to catch up"
            )
            wait_for(lambda: request()[0] == REPLICA, "reads to come back to the replica")
            back = time.monotonic() - caught_up
    logger.warning(
        "lag-aware routing: reads left %.2f s after the lag passed 1 s, came back %.2f s after it caught up",
        left,
        back,
    )
    # Measured at most once a second: a few seconds of margin on a loaded machine.
    assert left < 8 and back < 8


def test_read_your_writes_still_pins_the_primary_with_lag_aware_routing(
    tmp_path: Path, lag_table: ReplicaPair, django_db_blocker: Any
) -> None:
    with lag_aware_router(tmp_path, lag_table, django_db_blocker, max_replica_lag="10s"):
        wait_for(lambda: request()[0] == REPLICA, "reads to reach the replica")
        request_started.send(sender=None)
        try:
            Order.objects.create(reference="pinned")
            query = Order.objects.filter(reference="pinned")
            assert [query.db, query.count() >= 1] == [PRIMARY, True]
        finally:
            request_finished.send(sender=None)
        assert request()[0] == REPLICA


def test_a_stopped_replica_gets_no_reads_and_no_request_fails(
    tmp_path: Path, lag_table: ReplicaPair, django_db_blocker: Any
) -> None:
    standby = lag_table.replica
    with lag_aware_router(tmp_path, lag_table, django_db_blocker, max_replica_lag="5s") as router:
        wait_for(lambda: request()[0] == REPLICA, "reads to reach the replica")
        standby.stop("fast")
        try:
            # The measuring thread notices within about a second; no read is sent there after that.
            wait_for(lambda: router.replica_lag(REPLICA) is None, "the measuring thread to notice")
            results = [request() for _ in range(30)]
            assert {db for db, _ in results} == {PRIMARY}
        finally:
            standby.start()
            standby.wait_until_replicating()
        wait_for(lambda: request()[0] == REPLICA, "reads to come back to the restarted replica")


# ----------------------------------------------------------- several hosts


def reached(
    tmp_path: Path, alias_settings: dict[str, Any], environ: dict[str, str] | None = None
) -> dict[str, Any]:
    """dbcheck's report of `default` built from these settings: the host reached and its role.

    `default` is meant for writes: on a standby, dbcheck fails it with E160 alone.
    """
    databases = build_databases(
        tmp_path,
        environ=environ or {},
        overrides={"databases": {"default": alias_settings}} if alias_settings else None,
    )
    status, result = dbcheck_json(databases, "--database", "default")
    report = by_alias(result)["default"]
    standby = report["server"]["role"] == "standby"
    assert (status, [p["id"] for p in report["problems"]]) == (
        (1, ["dbconfig.E160"]) if standby else (0, [])
    ), report
    return dict(report["server"])


def test_failover_skips_a_first_host_that_is_down(tmp_path: Path, lag_table: ReplicaPair) -> None:
    primary = lag_table.primary
    down = free_port()
    settings = app(primary, host=["127.0.0.1", "127.0.0.1"], port=[down, primary.port])
    assert reached(tmp_path, settings) == {"host": "127.0.0.1", "port": primary.port, "role": "primary"}


def test_read_write_finds_the_primary_listed_second_in_a_url(tmp_path: Path, lag_table: ReplicaPair) -> None:
    primary, standby = lag_table
    url = (
        f"postgresql://app:{PASSWORD}@127.0.0.1:{standby.port},127.0.0.1:{primary.port}/app"
        "?target_session_attrs=read-write"
    )
    assert reached(tmp_path, {}, {"DATABASE_URL": url}) == {
        "host": "127.0.0.1",
        "port": primary.port,
        "role": "primary",
    }


@pytest.mark.parametrize(
    ("attrs", "role"), [("any", "standby"), ("primary", "primary"), ("prefer-standby", "standby")]
)
def test_target_session_attrs_choose_the_server(
    tmp_path: Path, lag_table: ReplicaPair, attrs: str, role: str
) -> None:
    primary, standby = lag_table
    settings = app(
        primary,
        host=["127.0.0.1", "127.0.0.1"],
        port=[standby.port, primary.port],
        target_session_attrs=attrs,
    )
    server = reached(tmp_path, settings)
    assert [server["role"], server["port"]] == [role, standby.port if role == "standby" else primary.port]


def test_a_django_connection_fails_over_with_hosts_from_variables(
    tmp_path: Path, lag_table: ReplicaPair
) -> None:
    from tests.conftest import django_connection, query_one

    primary, standby = lag_table
    config = load_config(
        tmp_path,
        environ={
            "DBCONFIG_DEFAULT_HOST": "127.0.0.1,127.0.0.1,127.0.0.1",
            "DBCONFIG_DEFAULT_PORT": f"{free_port()},{standby.port},{primary.port}",
            "DBCONFIG_DEFAULT_TARGET_SESSION_ATTRS": "read-write",
        },
        config_file=write_json(
            tmp_path / "dbconfig.json",
            {"databases": {"default": {k: v for k, v in app(primary).items() if k not in ("host", "port")}}},
        ),
    )
    with django_connection(dict(config.databases()["default"])) as connection:
        assert query_one(connection, "SELECT pg_is_in_recovery()") is False
        assert connection.connection.info.port == primary.port


def test_load_balance_hosts_random_spreads_new_connections_over_the_hosts(
    tmp_path: Path, lag_table: ReplicaPair
) -> None:
    from tests.conftest import django_connection

    primary, standby = lag_table
    config = load_config(
        tmp_path,
        environ={},
        overrides={
            "databases": {
                "default": app(
                    primary,
                    host=["127.0.0.1", "127.0.0.1"],
                    port=[standby.port, primary.port],
                    load_balance_hosts="random",
                )
            }
        },
    )
    ports = set()
    for _ in range(40):
        with django_connection(dict(config.databases()["default"])) as connection:
            ports.add(connection.connection.info.port)
        if len(ports) == 2:
            break
    # Without load balancing every connection would go to the first host; the odds of
    # 40 random draws all picking one host are 2 in a trillion.
    assert ports == {standby.port, primary.port}


def test_a_replica_that_stops_answering_gets_no_reads(
    tmp_path: Path, lag_table: ReplicaPair, django_db_blocker: Any
) -> None:
    import os
    import signal
    import subprocess

    standby = lag_table.replica
    with lag_aware_router(tmp_path, lag_table, django_db_blocker, max_replica_lag="5s") as router:
        wait_for(lambda: request()[0] == REPLICA, "reads to reach the replica")
        # The server and every session of it (the measuring one included) stop answering.
        postmaster = int((standby.data_dir / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        )
        processes = [postmaster, *(int(pid) for pid in children.stdout.split())]
        for pid in processes:
            os.kill(pid, signal.SIGSTOP)
        try:
            # The measurement hangs; past the connect timeout (3 s) and a round, it counts as no answer.
            took = wait_for(lambda: router.replica_lag(REPLICA) is None, "the hang to be noticed", timeout=30)
            assert {request()[0] for _ in range(10)} == {PRIMARY}
        finally:
            for pid in processes:
                os.kill(pid, signal.SIGCONT)
        logger.warning("a hung replica lost its reads after %.1f s", took)
        wait_for(lambda: request()[0] == REPLICA, "reads to come back once it answers again")
