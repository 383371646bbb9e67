"""A throwaway Galera cluster: mariadbd nodes on 127.0.0.1 with Debian's galera-4 provider.

The first node is initialised by mariadb-install-db and bootstraps the cluster
(`--wsrep-new-cluster`); the others start with an empty data directory and copy
the first one's data by rsync (SST). Every node has its own ports: SQL, group
communication (gmcast.listen_addr), incremental transfer (ist.recv_addr) and SST.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from tests.servers import (
    LOOPBACK,
    MariaDBServer,
    ServerUnavailable,
    _chown,
    _wait_for,
    free_port,
)

logger = logging.getLogger(__name__)

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
# How long a joining node may take to receive the first node's data and become Synced.
JOIN_TIMEOUT = 90.0
# A node that stops answering is suspected after 2 s and evicted after 4 s (the defaults,
# 5 s and 15 s, would stall writes for 15 s when a node is killed).
EVS_OPTIONS = (
    "evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;evs.install_timeout=PT4S"
)


class GaleraNode(MariaDBServer):
    """One node of a GaleraCluster (a MariaDBServer with wsrep settings)."""

    kind = "Galera node"

    def __init__(self, cluster: GaleraCluster, index: int) -> None:
        super().__init__()
        self.cluster = cluster
        self.index = index
        self.gcomm_port = free_port()
        self.ist_port = free_port()
        self.sst_port = free_port()
        self.bootstrap = index == 0

    def __repr__(self) -> str:
        return f"<GaleraNode {self.index} {self.host}:{self.port}>"

    def _initialize(self) -> None:
        if self.bootstrap:
            super()._initialize()
            return
        # A joiner starts empty: SST brings the first node's data, accounts included.
        self.data_dir.mkdir()
        _chown(self.data_dir, self.os_user)

    def _ready(self) -> bool:
        # The socket answers before the node has joined its cluster; until then every
        # statement but SET and SHOW fails (error 1047, "not yet prepared").
        return super()._ready() and self.synced()

    def _create_app_objects(self) -> None:
        if self.bootstrap:
            super()._create_app_objects()

    def _server_args(self) -> list[str]:
        options = ";".join(
            (
                f"gmcast.listen_addr=tcp://{LOOPBACK}:{self.gcomm_port}",
                f"ist.recv_addr={LOOPBACK}:{self.ist_port}",
                "gcache.size=32M",
                EVS_OPTIONS,
            )
        )
        args = [
            *super()._server_args(),
            "--wsrep-on=ON",
            f"--wsrep-provider={PROVIDER}",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            f"--wsrep-cluster-name=dbconfig-test-{self.cluster.name}",
            f"--wsrep-cluster-address={self.cluster.address}",
            f"--wsrep-node-name=node{self.index}",
            f"--wsrep-node-address={LOOPBACK}",
            f"--wsrep-node-incoming-address={LOOPBACK}:{self.port}",
            f"--wsrep-provider-options={options}",
            "--wsrep-sst-method=rsync",
            f"--wsrep-sst-receive-address={LOOPBACK}:{self.sst_port}",
        ]
        if self.bootstrap:
            args.append("--wsrep-new-cluster")
        return args

    def status(self) -> dict[str, str]:
        """The node's wsrep_* status variables (lower-case names)."""
        rows = self.sql("SHOW GLOBAL STATUS LIKE 'wsrep%'", dbname="")
        return {str(name).lower(): str(value) for name, value in rows}

    def synced(self) -> bool:
        """Whether the node is a ready, synced member of the primary component."""
        try:
            status = self.status()
        except Exception:
            return False
        return (
            status.get("wsrep_cluster_status") == "Primary"
            and status.get("wsrep_local_state_comment") == "Synced"
            and status.get("wsrep_ready") == "ON"
        )

    def isolate(self, isolated: bool) -> None:
        """Cut the node off from the others (or reconnect it) at the group-communication layer."""
        self.sql(f"SET GLOBAL wsrep_provider_options='gmcast.isolate={int(isolated)}'", dbname="")

    def alias(self, **extra: Any) -> dict[str, Any]:
        """A dbconfig alias for the `app` user on this node."""
        return {
            "backend": "mariadb",
            "host": self.host,
            "port": self.port,
            "name": self.dbname,
            "user": self.user,
            "password": self.password,
            "connect_timeout": "3s",
            **extra,
        }


class GaleraCluster:
    """`size` nodes on loopback ports; `start()` bootstraps, joins and waits until all are Synced."""

    def __init__(self, size: int = 3) -> None:
        if not PROVIDER.exists():
            raise ServerUnavailable(f"the Galera provider {PROVIDER} is missing (Debian package galera-4)")
        if shutil.which("rsync") is None:
            raise ServerUnavailable(
                "rsync is missing: joining nodes copy their data with it (Debian package rsync)"
            )
        self.name = str(free_port())
        self.nodes: list[GaleraNode] = []
        self.nodes = [GaleraNode(self, index) for index in range(size)]
        self.start_seconds: float | None = None

    def __repr__(self) -> str:
        return f"<GaleraCluster {[node.port for node in self.nodes]}>"

    @property
    def address(self) -> str:
        return "gcomm://" + ",".join(f"{LOOPBACK}:{node.gcomm_port}" for node in self.nodes)

    def start(self) -> GaleraCluster:
        started = time.monotonic()
        first, *joiners = self.nodes
        first.start()
        # After the bootstrap, a node that restarts joins like the others.
        first.bootstrap = False
        for node in joiners:
            node.start()
        for node in self.nodes:
            self.wait_synced(node)
        self.start_seconds = time.monotonic() - started
        logger.info("%r started in %.1f s", self, self.start_seconds)
        return self

    def wait_synced(self, node: GaleraNode, timeout: float = JOIN_TIMEOUT) -> None:
        _wait_for(node.synced, timeout=timeout, what=f"{node!r} to be Synced", interval=0.2)

    def wait_size(self, size: int, *, nodes: list[GaleraNode] | None = None, timeout: float = 30.0) -> None:
        """Wait until every running node (of `nodes`) sees a primary component of `size` nodes."""

        def settled() -> bool:
            for node in self.nodes if nodes is None else nodes:
                if not node.running:
                    continue
                try:
                    status = node.status()
                except Exception:
                    return False
                if status.get("wsrep_cluster_size") != str(size) or not node.synced():
                    return False
            return True

        _wait_for(settled, timeout=timeout, what=f"a cluster of {size} nodes", interval=0.2)

    def cleanup(self) -> None:
        for node in reversed(self.nodes):
            node.cleanup()


def start_cluster(size: int = 3) -> GaleraCluster:
    """A started cluster of `size` nodes; whatever was started is cleaned up if it fails."""
    cluster = GaleraCluster(size)
    try:
        return cluster.start()
    except BaseException:
        cluster.cleanup()
        raise
