"""A real three-node Galera cluster (MariaDB 10.11 with Debian's galera-4), through the
project's own configuration: causal reads, dbcheck's report of each node's cluster
state, and a node killed under load.

Marked galera: not in the default run; `bash scripts/galera-suite.sh` runs it (about a
minute; `-s` prints the figures measured). The tests share one cluster and run in file
order: the last two are about a killed node.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import django_connection
from tests.galera import GaleraCluster, GaleraNode, start_cluster
from tests.servers import serving
from tests.test_dbcheck import configure, dbcheck_json, ids

pytestmark = [pytest.mark.galera, pytest.mark.mariadb]

# Writes on one node read at once on another, per setting.
CAUSAL_ITERATIONS = 1000
# Load around the killed node: seconds before the kill, and after it.
LOAD_BEFORE_S = 2.0
LOAD_AFTER_S = 10.0

# Figures the tests measured, printed at the end of the module (pytest -s, or the -rA summary).
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def cluster() -> Iterator[GaleraCluster]:
    with serving("throwaway Galera cluster (galera-4 and rsync)", lambda: start_cluster(3)) as started:
        started.nodes[0].sql("CREATE TABLE causal (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)")
        FIGURES["cluster_start_s"] = round(started.start_seconds or 0, 1)
        yield started
    if FIGURES:
        print("\nGalera figures:", FIGURES)


@pytest.fixture(scope="module")
def databases(cluster: GaleraCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """node0..node2 (causal reads on, galera_cluster_size 3), and node1_plain (causal reads off)."""
    aliases = {
        f"node{node.index}": node.alias(wsrep_sync_wait=1, galera_cluster_size=3) for node in cluster.nodes
    }
    aliases["node1_plain"] = cluster.nodes[1].alias(wsrep_sync_wait=0)
    return configure(tmp_path_factory.mktemp("galera"), aliases)


def insert(cursor: Any, value: int) -> int:
    cursor.execute("INSERT INTO causal (v) VALUES (%s)", [value])
    return int(cursor.lastrowid)


def read(cursor: Any, row_id: int) -> int | None:
    cursor.execute("SELECT v FROM causal WHERE id = %s", [row_id])
    row = cursor.fetchone()
    return None if row is None else int(row[0])


def misses(databases: dict[str, Any], reader: str) -> int:
    """Write on node0, read the row at once on `reader`; how many reads did not see it.

    The milliseconds per write and read go to FIGURES (measured, never asserted)."""
    missed = 0
    with (
        django_connection(databases["node0"]) as writer,
        django_connection(databases[reader]) as other,
    ):
        writes, reads = writer.connection.cursor(), other.connection.cursor()
        started = time.monotonic()
        for value in range(CAUSAL_ITERATIONS):
            row_id = insert(writes, value)
            if read(reads, row_id) != value:
                missed += 1
        FIGURES[f"{reader}_ms_per_write_and_read"] = round(
            (time.monotonic() - started) * 1000 / CAUSAL_ITERATIONS, 2
        )
    return missed


def test_each_session_runs_with_its_configured_sync_wait(databases: dict[str, Any]) -> None:
    found = {}
    for alias in ("node1", "node1_plain"):
        with django_connection(databases[alias]) as connection:
            cursor = connection.connection.cursor()
            cursor.execute("SELECT @@session.wsrep_sync_wait, @@global.wsrep_sync_wait")
            found[alias] = cursor.fetchone()
    assert found == {"node1": (1, 0), "node1_plain": (0, 0)}


def test_causal_reads_see_a_write_made_on_another_node(databases: dict[str, Any]) -> None:
    FIGURES["causal_on_misses"] = f"{misses(databases, 'node1')}/{CAUSAL_ITERATIONS}"
    assert FIGURES["causal_on_misses"] == f"0/{CAUSAL_ITERATIONS}"


def test_reads_without_causal_reads_may_miss_a_write_made_on_another_node(databases: dict[str, Any]) -> None:
    # Measured, not asserted either way: a miss needs the read to overtake the node's apply,
    # which on loopback is a matter of microseconds.
    missed = misses(databases, "node1_plain")
    FIGURES["causal_off_misses"] = f"{missed}/{CAUSAL_ITERATIONS}"
    assert 0 <= missed <= CAUSAL_ITERATIONS


def test_dbcheck_reports_every_node_healthy(databases: dict[str, Any]) -> None:
    status, result = dbcheck_json(
        databases, "--database", "node0", "--database", "node1", "--database", "node2"
    )
    assert status == 0
    for db in result["databases"]:
        assert db["cluster"] == {
            "kind": "galera",
            "status": "Primary",
            "state": "Synced",
            "ready": True,
            "size": 3,
            "expected_size": 3,
        }
        assert db["settings"]["wsrep_sync_wait"] == {"expected": "1", "actual": "1", "ok": True}
        assert ids(db) == []


@contextlib.contextmanager
def isolated(cluster: GaleraCluster, node: GaleraNode) -> Iterator[None]:
    """Cut `node` off from the others for the block, then wait until it is back and synced."""
    node.isolate(True)
    try:
        deadline = time.monotonic() + 30
        while node.status().get("wsrep_cluster_status") == "Primary":
            assert time.monotonic() < deadline, "the isolated node stayed in the primary component"
            time.sleep(0.2)
        # The other two, once they have evicted it.
        cluster.wait_size(2, nodes=[other for other in cluster.nodes if other is not node])
        yield
    finally:
        node.isolate(False)
        cluster.wait_size(3, timeout=60)


def test_dbcheck_fails_a_node_cut_off_from_the_others(
    cluster: GaleraCluster, databases: dict[str, Any]
) -> None:
    with isolated(cluster, cluster.nodes[2]):
        started = time.monotonic()
        status, result = dbcheck_json(databases, "--database", "node2", "--database", "node0")
        elapsed = time.monotonic() - started
    node0, node2 = sorted(result["databases"], key=lambda db: str(db["alias"]))
    assert status == 1
    assert ids(node2) == ["dbconfig.E170"]
    assert node2["cluster"] == {
        "kind": "galera",
        "status": "non-Primary",
        "state": node2["cluster"]["state"],
        "ready": False,
        "size": 1,
        "expected_size": 3,
    }
    # The rest of the cluster still has its quorum: a warning, not an error.
    assert (node0["ok"], ids(node0), node0["cluster"]["size"]) == (True, ["dbconfig.W170"], 2)
    # The cut-off node answers SHOW at once: dbcheck does not wait for a causal read to time out.
    assert elapsed < 10
    FIGURES["dbcheck_isolated_s"] = round(elapsed, 2)


def test_dbcheck_fails_a_desynced_node(cluster: GaleraCluster, databases: dict[str, Any]) -> None:
    node = cluster.nodes[1]
    node.sql("SET GLOBAL wsrep_desync = ON", dbname="")
    try:
        status, result = dbcheck_json(databases, "--database", "node1")
    finally:
        node.sql("SET GLOBAL wsrep_desync = OFF", dbname="")
        cluster.wait_synced(node)
    (db,) = result["databases"]
    assert status == 1
    assert (db["cluster"]["state"], db["cluster"]["ready"], ids(db)) == (
        "Donor/Desynced",
        True,
        ["dbconfig.E171"],
    )


class Worker(threading.Thread):
    """Writes on one alias and reads each row back (causal) on another, until told to stop."""

    def __init__(self, databases: dict[str, Any], writer: str, reader: str, stop: threading.Event) -> None:
        super().__init__(name=f"{writer}->{reader}", daemon=True)
        self.databases, self.writer, self.reader, self.stop = databases, writer, reader, stop
        self.timeline: list[tuple[float, float, bool]] = []  # (started, seconds, ok) per write+read

    def run(self) -> None:
        value = 0
        with (
            django_connection(self.databases[self.writer]) as writer,
            django_connection(self.databases[self.reader]) as reader,
        ):
            writes, reads = writer.connection.cursor(), reader.connection.cursor()
            while not self.stop.is_set():
                value += 1
                started = time.monotonic()
                try:
                    ok = read(reads, insert(writes, value)) == value
                except Exception:
                    ok = False
                    if self.stop.wait(0.05):
                        break
                self.timeline.append((started, time.monotonic() - started, ok))

    def after(self, moment: float) -> list[tuple[float, float, bool]]:
        return [entry for entry in self.timeline if entry[0] >= moment]


def test_a_node_killed_under_load_stops_no_request_on_the_others(
    cluster: GaleraCluster, databases: dict[str, Any]
) -> None:
    stop = threading.Event()
    survivors = [Worker(databases, "node0", "node1", stop), Worker(databases, "node1", "node0", stop)]
    doomed = Worker(databases, "node2", "node0", stop)
    for worker in [*survivors, doomed]:
        worker.start()
    time.sleep(LOAD_BEFORE_S)
    killed_at = time.monotonic()
    cluster.nodes[2].stop("immediate")  # SIGKILL: no goodbye to the group
    time.sleep(LOAD_AFTER_S)
    stopped_at = time.monotonic()
    stop.set()
    for worker in [*survivors, doomed]:
        worker.join(30)
        assert not worker.is_alive()

    sent = sum(len(worker.timeline) for worker in survivors)
    failed = sum(1 for worker in survivors for _, _, ok in worker.timeline if not ok)
    longest = max(seconds for worker in survivors for _, seconds, _ in worker.after(killed_at))
    FIGURES["kill_survivors_sent"] = sent
    FIGURES["kill_survivors_failed"] = failed
    FIGURES["kill_longest_stall_s"] = round(longest, 2)
    FIGURES["kill_doomed_failed_after_kill"] = sum(1 for _, _, ok in doomed.after(killed_at) if not ok)
    assert failed == 0
    # Both survivors went on after the stall while the group evicted the node: pairs in the
    # last 3 s of the load, 7 s after the kill (the eviction takes about 3 s).
    assert all(len(worker.after(stopped_at - 3)) >= 10 for worker in survivors)

    # Two nodes left of the three configured: a warning, and the alias still passes.
    cluster.wait_size(2)
    status, result = dbcheck_json(databases, "--database", "node0")
    (db,) = result["databases"]
    assert (status, ids(db), db["cluster"]["size"]) == (0, ["dbconfig.W170"], 2)


def test_a_killed_node_is_reported_unreachable(cluster: GaleraCluster, databases: dict[str, Any]) -> None:
    cluster.nodes[2].stop("immediate")  # already, after the test above; also when run alone
    status, result = dbcheck_json(databases, "--database", "node2")
    (db,) = result["databases"]
    assert (status, db["ok"], ids(db)) == (1, False, ["dbconfig.E101"])
