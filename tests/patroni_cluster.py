"""A throwaway three-node Patroni cluster (one etcd, three PostgreSQL nodes) and an HAProxy in front.

Everything runs on 127.0.0.1 with free ports and temporary directories: Debian's `etcd`,
`patroni` and `haproxy` programs (installed by `DBCONFIG_PATRONI=1 bash scripts/setup.sh`),
never their packaged services. Patroni and PostgreSQL run as the `postgres` user (initdb
refuses root). HAProxy has two ports, as Patroni's documentation shows: one whose servers
are checked with `/primary` on Patroni's REST port, one checked with `/replica`, both with
`on-marked-down shutdown-sessions`.

Used by tests/test_patroni.py (marker `patroni`, run by scripts/patroni-suite.sh).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.servers import (
    LOOPBACK,
    ServerUnavailable,
    _clean_env,
    _is_root,
    _make_dir,
    _run,
    _tail,
    _wait_for,
    free_port,
    pg_bindir,
    server_unavailable,
)

DBNAME = "app"
SUPERUSER = "postgres"
# Patroni's smallest allowed leader-key time to live: a failover takes about this long.
TTL_S = 20
PROGRAMS = ("etcd", "patroni", "patronictl", "haproxy")


def _program(name: str) -> str:
    path = shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{name}", os.X_OK)), None
    )
    if path is None:
        raise ServerUnavailable(
            f"program not found: {name} (install it with: DBCONFIG_PATRONI=1 bash scripts/setup.sh)"
        )
    return path


def _http_status(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (a loopback URL we built)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        status = exc.code
    except OSError:
        return 0, None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class _Process:
    """A started program with its log file; stop() sends SIGTERM, then SIGKILL."""

    def __init__(self, argv: list[str], log: Path, *, user: str | None = None, cwd: Path | None = None):
        self.log = log
        self._log_file: IO[bytes] = log.open("ab")
        kwargs: dict[str, Any] = {}
        env = _clean_env()
        if user and _is_root():
            entry = pwd.getpwnam(user)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            env["HOME"] = entry.pw_dir
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            **kwargs,
        )

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        if self.running:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log_file.close()


class PatroniNode:
    """One Patroni member: its configuration, REST port, PostgreSQL port and data directory."""

    def __init__(self, cluster: PatroniCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.port = free_port()
        self.rest_port = free_port()
        self.directory = _make_dir(f"dbconfig-patroni-{name}-", owner="postgres")
        self.data_dir = self.directory / "data"
        self.config = self.directory / "patroni.yml"
        self.process: _Process | None = None

    def __repr__(self) -> str:
        return f"<PatroniNode {self.name} pg={self.port} rest={self.rest_port}>"

    @property
    def rest_url(self) -> str:
        return f"http://{LOOPBACK}:{self.rest_port}"

    def write_config(self) -> None:
        secret = self.cluster.replication_secret
        document = {
            "scope": self.cluster.scope,
            "namespace": "/dbconfig-tests/",
            "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"{LOOPBACK}:{self.rest_port}",
                "connect_address": f"{LOOPBACK}:{self.rest_port}",
            },
            "etcd3": {"hosts": [f"{LOOPBACK}:{self.cluster.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_S,
                    "loop_wait": 1,
                    "retry_timeout": 5,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {"wal_log_hints": "on", "max_connections": 60},
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
                "pg_hba": [
                    "local all all trust",
                    f"host all all {LOOPBACK}/32 trust",
                    f"host replication all {LOOPBACK}/32 trust",
                ],
            },
            "postgresql": {
                "listen": f"{LOOPBACK}:{self.port}",
                "connect_address": f"{LOOPBACK}:{self.port}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(pg_bindir()),
                "pgpass": str(self.directory / "pgpass"),
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": secret},
                    "replication": {"username": "replicator", "password": secret},
                    "rewind": {"username": "rewinder", "password": secret},
                },
                "parameters": {
                    "unix_socket_directories": str(self.directory),
                    "shared_buffers": "16MB",
                    # Throwaway data: a SIGKILL of postgres loses nothing with fsync off,
                    # only a crash of the machine would.
                    "fsync": "off",
                    "log_min_messages": "warning",
                },
                "remove_data_directory_on_rewind_failure": True,
                "remove_data_directory_on_diverged_timelines": True,
            },
            "tags": {"nofailover": False, "noloadbalance": False},
        }
        # JSON is YAML: no YAML writer needed.
        self.config.write_text(json.dumps(document, indent=2))
        if _is_root():
            shutil.chown(self.config, user="postgres", group="postgres")

    def start(self) -> None:
        self.write_config()
        self.process = _Process(
            [_program("patroni"), str(self.config)],
            self.directory / "patroni.log",
            user="postgres",
            cwd=self.directory,
        )

    def state(self) -> dict[str, Any]:
        """Patroni's own view of this member (GET /patroni), or {} when it does not answer."""
        status, body = _http_status(f"{self.rest_url}/patroni")
        return body if status and isinstance(body, dict) else {}

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        return None

    def crash(self) -> None:
        """The node dies: SIGKILL to Patroni, then to its postmaster (the backends exit with it)."""
        postmaster = self.postmaster_pid()
        if self.process is not None:
            self.process.kill()
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=60)
        postmaster = self.postmaster_pid()
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class PatroniCluster:
    """etcd, three Patroni nodes and HAProxy (`primary_port`, `replica_port`), all on loopback."""

    def __init__(self, size: int = 3) -> None:
        self.scope = f"dbconfig-{uuid.uuid4().hex[:8]}"
        self.replication_secret = uuid.uuid4().hex
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.haproxy_stats_port = free_port()
        self.directory = _make_dir("dbconfig-patroni-")
        self.nodes = [PatroniNode(self, f"node{i + 1}") for i in range(size)]
        self.etcd: _Process | None = None
        self.haproxy: _Process | None = None

    def __repr__(self) -> str:
        return f"<PatroniCluster {self.scope} nodes={self.nodes}>"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PatroniCluster:
        for name in PROGRAMS:
            _program(name)
        try:
            self._start_etcd()
            for node in self.nodes:
                node.start()
            self.wait_healthy(timeout=120)
            leader = self.leader()
            _run(
                [
                    str(pg_bindir() / "psql"),
                    "-h",
                    LOOPBACK,
                    "-p",
                    str(leader.port),
                    "-U",
                    SUPERUSER,
                    "-d",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    f"CREATE DATABASE {DBNAME}",
                ],
                user="postgres",
            )
            _run(
                [
                    str(pg_bindir() / "psql"),
                    "-h",
                    LOOPBACK,
                    "-p",
                    str(leader.port),
                    "-U",
                    SUPERUSER,
                    "-d",
                    DBNAME,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-c",
                    "CREATE TABLE shop_order (id bigserial PRIMARY KEY, reference varchar(40) NOT NULL)",
                ],
                user="postgres",
            )
            self._start_haproxy()
            self.wait_healthy(timeout=60)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _start_etcd(self) -> None:
        data = self.directory / "etcd"
        client = f"http://{LOOPBACK}:{self.etcd_port}"
        peer = f"http://{LOOPBACK}:{self.etcd_peer_port}"
        self.etcd = _Process(
            [
                _program("etcd"),
                "--name",
                "etcd1",
                "--data-dir",
                str(data),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"etcd1={peer}",
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                self.scope,
            ],
            self.directory / "etcd.log",
        )
        _wait_for(
            lambda: _http_status(f"{client}/health")[0] == 200,
            timeout=30,
            what=f"etcd on port {self.etcd_port}\n{_tail(self.directory / 'etcd.log')}",
        )

    def _haproxy_config(self) -> str:
        lines = [
            "global",
            "    maxconn 400",
            "defaults",
            "    mode tcp",
            "    timeout connect 2s",
            "    timeout client 30m",
            "    timeout server 30m",
            "    timeout check 1s",
            "listen stats",
            "    mode http",
            f"    bind {LOOPBACK}:{self.haproxy_stats_port}",
            "    stats enable",
            "    stats uri /",
        ]
        for name, port, check in (
            ("primary", self.primary_port, "/primary"),
            ("replicas", self.replica_port, "/replica"),
        ):
            lines += [
                f"listen {name}",
                f"    bind {LOOPBACK}:{port}",
                "    balance roundrobin",
                f"    option httpchk OPTIONS {check}",
                "    http-check expect status 200",
                "    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions",
            ]
            lines += [
                f"    server {node.name} {LOOPBACK}:{node.port} maxconn 100 check port {node.rest_port}"
                for node in self.nodes
            ]
        return "\n".join(lines) + "\n"

    def _start_haproxy(self) -> None:
        config = self.directory / "haproxy.cfg"
        config.write_text(self._haproxy_config())
        _run([_program("haproxy"), "-c", "-f", str(config)])
        self.haproxy = _Process(
            [_program("haproxy"), "-db", "-f", str(config)], self.directory / "haproxy.log"
        )
        _wait_for(
            lambda: self.haproxy_up("primary") == 1 and self.haproxy_up("replicas") == len(self.nodes) - 1,
            timeout=30,
            what=f"HAProxy's checks\n{_tail(self.directory / 'haproxy.log')}",
        )

    def haproxy_up(self, backend: str) -> int:
        """How many servers of an HAProxy backend are UP (its CSV statistics)."""
        status, body = _http_status(f"http://{LOOPBACK}:{self.haproxy_stats_port}/;csv")
        if status != 200 or not isinstance(body, str):
            return -1
        return sum(
            1
            for row in body.splitlines()
            if row.startswith(f"{backend},node") and row.split(",")[17].startswith("UP")
        )

    def cleanup(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()
        if self.etcd is not None:
            self.etcd.stop()
        for node in self.nodes:
            shutil.rmtree(node.directory, ignore_errors=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ state

    def members(self) -> list[dict[str, Any]]:
        """The cluster as Patroni reports it (GET /cluster on the first node that answers)."""
        for node in self.nodes:
            status, body = _http_status(f"{node.rest_url}/cluster")
            if status == 200 and isinstance(body, dict):
                return list(body.get("members", []))
        return []

    def node(self, name: str) -> PatroniNode:
        return next(node for node in self.nodes if node.name == name)

    def leader(self) -> PatroniNode:
        for member in self.members():
            if member.get("role") == "leader" and member.get("state") == "running":
                return self.node(member["name"])
        raise ServerUnavailable(f"the Patroni cluster has no running leader: {self.members()}")

    def healthy(self) -> bool:
        """One running leader and every other member streaming from it."""
        members = self.members()
        leaders = [m for m in members if m.get("role") == "leader" and m.get("state") == "running"]
        streaming = [
            m for m in members if m.get("role") == "replica" and m.get("state") in {"streaming", "running"}
        ]
        return (
            len(leaders) == 1
            and len(streaming) == len(self.nodes) - 1
            and all((m.get("lag") in (0, None)) for m in streaming)
        )

    def wait_healthy(self, timeout: float) -> None:
        _wait_for(
            self.healthy,
            timeout=timeout,
            interval=0.5,
            what=f"a healthy Patroni cluster: {self.members()}\n"
            + "\n".join(f"{n.name}: {_tail(n.directory / 'patroni.log', 8)}" for n in self.nodes),
        )
        if self.haproxy is not None:
            _wait_for(
                lambda: (
                    self.haproxy_up("primary") == 1 and self.haproxy_up("replicas") == len(self.nodes) - 1
                ),
                timeout=30,
                what="HAProxy's checks to see the new roles",
            )

    # ------------------------------------------------------------------ events

    def switchover(self, candidate: PatroniNode) -> None:
        """A planned switchover, as an operator runs it: patronictl switchover --force."""
        leader = self.leader()
        _run(
            [
                _program("patronictl"),
                "-c",
                str(leader.config),
                "switchover",
                "--leader",
                leader.name,
                "--candidate",
                candidate.name,
                "--force",
                self.scope,
            ],
            user="postgres",
            timeout=120,
        )

    def wait_leader(self, name: str, timeout: float) -> float:
        """Wait until *name* is the running leader; the monotonic time it was first seen so."""
        _wait_for(
            lambda: any(
                m.get("name") == name and m.get("role") == "leader" and m.get("state") == "running"
                for m in self.members()
            ),
            timeout=timeout,
            interval=0.1,
            what=f"{name} to lead: {self.members()}",
        )
        return time.monotonic()

    def rejoin(self, node: PatroniNode) -> None:
        """Start a crashed node's Patroni again; it rejoins as a replica (pg_rewind if needed)."""
        node.start()
        self.wait_healthy(timeout=120)


@pytest.fixture(scope="module")
def patroni_cluster() -> Iterator[PatroniCluster]:
    cluster = PatroniCluster()
    try:
        cluster.start()
    except Exception as exc:
        server_unavailable("a throwaway Patroni cluster (etcd, patroni, haproxy)", exc)
    try:
        yield cluster
    finally:
        cluster.cleanup()


__all__ = ["DBNAME", "SUPERUSER", "TTL_S", "PatroniCluster", "PatroniNode"]
