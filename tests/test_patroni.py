"""Writes and reads under load through a real Patroni cluster while its primary moves.

A three-node Patroni cluster (tests/patroni_cluster.py) serves four configurations at once,
each a primary alias and a replica alias built by `build_databases()`:

- `hosts`: the three nodes as a host list, `target_session_attrs=read-write` for the
  primary alias and `prefer-standby` for the replica alias;
- `haproxy`: HAProxy's port checked with Patroni's `/primary`, and its port checked with
  `/replica`;

each with the defaults (persistent connections, health checks) and with `pool: true`.
Per alias, writer threads create `Order` rows and reader threads read the newest one,
one request each (request_started / request_finished around it), and each request asks
the server which node it is on. Then the primary moves: a planned switchover
(`patronictl switchover --force`), or a failover (the primary node's Patroni and
postgres killed with SIGKILL). The figures of each configuration are printed (run with
-s: scripts/patroni-suite.sh does).

Marker `patroni`: not part of the default run (pyproject's addopts); run it with
`bash scripts/patroni-suite.sh`.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, connections

from django_dbconfig import build_databases
from tests.apps.shop.models import Order
from tests.helpers import registered
from tests.patroni_cluster import DBNAME, SUPERUSER, TTL_S, PatroniCluster, PatroniNode

pytestmark = [pytest.mark.patroni, pytest.mark.postgresql, pytest.mark.slow]

WRITERS = 2
READERS = 2
PAUSE_S = 0.02  # between two requests of one thread
ROUTES = ("hosts", "haproxy")
MODES = ("defaults", "pool")
CONFIGURATIONS = tuple(f"{route}_{mode}" for route in ROUTES for mode in MODES)
# After the new primary is known, every configuration must write and read again within this.
RECOVERY_BOUND_S = 30.0
# Load kept on after every configuration has written again, to see that it stays so.
AFTER_S = 2.0


def settings_for(cluster: PatroniCluster, tmp_path: Path) -> dict[str, Any]:
    """DATABASES entries of the four configurations (aliases `<route>_<mode>` and `..._replica`)."""
    hosts = ["127.0.0.1"] * len(cluster.nodes)
    ports = [node.port for node in cluster.nodes]
    # Everything else is left at its default (connect_timeout 5 s, conn_max_age 60 s, health checks).
    common = {"backend": "postgresql", "name": DBNAME, "user": SUPERUSER}
    databases: dict[str, Any] = {}
    for route in ROUTES:
        for mode in MODES:
            alias = f"{route}_{mode}"
            extra: dict[str, Any] = {"pool": True} if mode == "pool" else {}
            if route == "hosts":
                primary = {"host": hosts, "port": ports, "target_session_attrs": "read-write"}
                replica = {"host": hosts, "port": ports, "target_session_attrs": "prefer-standby"}
            else:
                primary = {"host": "127.0.0.1", "port": cluster.primary_port}
                replica = {"host": "127.0.0.1", "port": cluster.replica_port}
            databases[alias] = common | primary | extra
            databases[f"{alias}_replica"] = {"replica_of": alias} | replica | extra
    built = build_databases(tmp_path, environ={}, overrides={"databases": databases})
    return {alias: built[alias] for alias in databases}


@dataclass(frozen=True)
class Request:
    alias: str
    started: float
    ended: float
    error: str | None
    port: int | None
    standby: bool | None


class Load:
    """Writer and reader threads on every configuration, recording each request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(alias, write), name=f"{alias}-{i}", daemon=True)
            for configuration in CONFIGURATIONS
            for alias, write, count in (
                (configuration, True, WRITERS),
                (f"{configuration}_replica", False, READERS),
            )
            for i in range(count)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, alias: str, write: bool) -> None:
        try:
            while not self._stop.is_set():
                self._request(alias, write)
                time.sleep(PAUSE_S)
        finally:
            connections[alias].close()

    def _request(self, alias: str, write: bool) -> None:
        request_started.send(sender=None)
        started = time.monotonic()
        error, port, standby = None, None, None
        try:
            if write:
                Order.objects.using(alias).create(reference=threading.current_thread().name)
            else:
                Order.objects.using(alias).order_by("-id").values_list("id", flat=True).first()
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT inet_server_port(), pg_is_in_recovery()")
                port, standby = cursor.fetchone()
        except DatabaseError as exc:
            error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}"
        finally:
            request_finished.send(sender=None)
        with self._lock:
            self.requests.append(Request(alias, started, time.monotonic(), error, port, standby))

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def wait_until(self, done: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.snapshot()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)


def every_alias_served(after: float, leader_port: int | None = None) -> Any:
    """True once every alias has a successful request started after *after* (writes on *leader_port*)."""

    def done(requests: list[Request]) -> bool:
        served = {
            r.alias
            for r in requests
            if r.started >= after
            and r.error is None
            and (r.alias.endswith("_replica") or leader_port in (None, r.port))
        }
        return all(c in served and f"{c}_replica" in served for c in CONFIGURATIONS)

    return done


@dataclass
class Figures:
    """What one configuration went through, from the switch on."""

    configuration: str
    writes: int
    failed_writes: int
    read_only_failures: int
    first_write_s: float | None
    last_failed_write_s: float | None
    reads: int
    failed_reads: int
    first_read_s: float | None
    reads_went: dict[str, int]
    errors: collections.Counter[str]

    def line(self) -> str:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        went = ", ".join(f"{where} {count}" for where, count in sorted(self.reads_went.items()))
        return (
            f"{self.configuration:16} writes {self.writes:5} failed {self.failed_writes:3}"
            f" (read-only {self.read_only_failures}) first ok {seconds(self.first_write_s):>6}s"
            f" last failed {seconds(self.last_failed_write_s):>6}s |"
            f" reads {self.reads:5} failed {self.failed_reads:3} first ok {seconds(self.first_read_s):>6}s"
            f" | reads went: {went}"
        )


def figures(
    requests: list[Request],
    configuration: str,
    *,
    switched: float,
    recovered: float,
    new_leader: PatroniNode,
    names: dict[int, str],
) -> Figures:
    """The figures of one configuration for the requests that ended after *switched*."""
    writes = [r for r in requests if r.alias == configuration and r.ended >= switched]
    reads = [r for r in requests if r.alias == f"{configuration}_replica" and r.ended >= switched]
    first_write = min(
        (r.ended for r in writes if r.error is None and r.port == new_leader.port), default=None
    )
    first_read = min((r.ended for r in reads if r.error is None and r.started >= switched), default=None)
    went = collections.Counter(
        f"{names.get(r.port or 0, r.port)} ({'standby' if r.standby else 'primary'})"
        for r in reads
        if r.error is None and r.started <= recovered
    )
    errors = collections.Counter(r.error for r in writes + reads if r.error)
    return Figures(
        configuration=configuration,
        writes=len(writes),
        failed_writes=sum(1 for r in writes if r.error),
        read_only_failures=sum(1 for r in writes if r.error and "read-only" in r.error),
        first_write_s=None if first_write is None else first_write - switched,
        last_failed_write_s=max((r.ended - switched for r in writes if r.error), default=None),
        reads=len(reads),
        failed_reads=sum(1 for r in reads if r.error),
        first_read_s=None if first_read is None else first_read - switched,
        reads_went=dict(went),
        errors=errors,
    )


@pytest.fixture
def cluster_aliases(patroni_cluster: PatroniCluster, tmp_path: Path) -> Iterator[PatroniCluster]:
    patroni_cluster.wait_healthy(timeout=120)
    with registered(settings_for(patroni_cluster, tmp_path)):
        yield patroni_cluster


def run_scenario(cluster: PatroniCluster, event: str) -> dict[str, Figures]:
    """Load on, the primary moved by *event*, load kept on until every alias is served again."""
    names = {node.port: node.name for node in cluster.nodes}
    old_leader = cluster.leader()
    candidate = next(node for node in cluster.nodes if node is not old_leader)
    with Load() as load:
        load.wait_until(every_alias_served(0.0), timeout=60, what="every alias to serve before the switch")
        time.sleep(1.0)
        switched = time.monotonic()
        if event == "switchover":
            cluster.switchover(candidate)
            leader_seen = cluster.wait_leader(candidate.name, timeout=60)
            new_leader = candidate
        else:
            old_leader.crash()
            new_leader = wait_new_leader(cluster, old_leader, timeout=TTL_S * 3)
            leader_seen = time.monotonic()
        load.wait_until(
            every_alias_served(leader_seen, new_leader.port),
            timeout=RECOVERY_BOUND_S,
            what="every alias to write on the new primary and read again",
        )
        recovered = time.monotonic()
        time.sleep(AFTER_S)
    requests = load.snapshot()
    if event == "failover":
        cluster.rejoin(old_leader)
    else:
        cluster.wait_healthy(timeout=120)
    results = {
        c: figures(requests, c, switched=switched, recovered=recovered, new_leader=new_leader, names=names)
        for c in CONFIGURATIONS
    }
    print(
        f"\n{event}: {old_leader.name} -> {new_leader.name}, new leader seen after {leader_seen - switched:.2f} s"
    )
    for result in results.values():
        print("  " + result.line())
        for error, count in result.errors.most_common():
            print(f"      {count:4} x {error}")
    return results


def wait_new_leader(cluster: PatroniCluster, old: PatroniNode, timeout: float) -> PatroniNode:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for member in cluster.members():
            if (
                member.get("name") != old.name
                and member.get("role") == "leader"
                and member.get("state") == "running"
            ):
                return cluster.node(member["name"])
        time.sleep(0.1)
    raise AssertionError(f"no new leader {timeout:.0f} s after {old.name} died: {cluster.members()}")


def lost_in_flight(result: Figures) -> bool:
    """Every failure of the configuration is a request whose connection was cut under it."""
    return all("lost the connection to the server" in error for error in result.errors)


def test_planned_switchover_loses_only_requests_in_flight(cluster_aliases: PatroniCluster) -> None:
    results = run_scenario(cluster_aliases, "switchover")
    # At most one request per writer thread: the one in flight when the old primary shut down.
    # Connections opened while there is no primary wait for the new one (within connect_timeout).
    assert {c: min(r.failed_writes, WRITERS + 1) for c, r in results.items()} == {
        c: min(r.failed_writes, WRITERS) for c, r in results.items()
    }
    assert all(r.first_write_s is not None for r in results.values())
    # A host list with prefer-standby keeps its reads where they were: not one fails.
    assert results["hosts_defaults"].failed_reads == 0
    # Elsewhere a read can be cut in flight: HAProxy's /replica check turns down the promoted
    # node and shuts its sessions; a pooled read connection may sit on the old primary.
    assert {c: min(r.failed_reads, READERS + 1) for c, r in results.items()} == {
        c: min(r.failed_reads, READERS) for c, r in results.items()
    }
    assert [c for c, r in results.items() if not lost_in_flight(r)] == []


def test_failover_after_the_primary_node_dies(cluster_aliases: PatroniCluster) -> None:
    results = run_scenario(cluster_aliases, "failover")
    # No primary until the leader key expires (TTL_S): writes wait connect_timeout, then fail.
    # Every configuration writes on the new primary within RECOVERY_BOUND_S of its election
    # (run_scenario waits for that), and reads carry on from the standbys.
    assert all(r.first_write_s is not None for r in results.values())
    assert results["hosts_defaults"].failed_reads == 0
    assert {c: min(r.failed_reads, READERS + 1) for c, r in results.items()} == {
        c: min(r.failed_reads, READERS) for c, r in results.items()
    }
