"""Throwaway PgBouncer instances in front of a throwaway PostgreSQL, for the pooler tests.

Each instance is Debian's `pgbouncer` run (as the ``postgres`` user when root: PgBouncer
refuses to run as root) with its own config, pidfile, log and socket directory in a
temp dir, on a free port; the system's pgbouncer service is never touched. Clients
reach it over TCP with SCRAM-SHA-256; it logs in to the server as the same user with
the password from its auth file. TLS between client and PgBouncer is offered
(`client_tls_sslmode = allow`) with a certificate from the session test CA, while
PgBouncer talks to the server in plain text: so "TLS as the client sees it" and "TLS as
the server sees it" differ, which is what the dbcheck tests need.

Registered in tests/conftest.py's ``pytest_plugins``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import (
    LOOPBACK,
    START_TIMEOUT,
    PostgresServer,
    ServerUnavailable,
    TLSMaterial,
    _chown,
    _is_root,
    _make_dir,
    _register,
    _run,
    _tail,
    _unregister,
    _wait_for,
    free_port,
    serving,
)

ADMIN_USER = "pgbouncer_admin"


def pgbouncer_program() -> str:
    found = shutil.which("pgbouncer", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        raise ServerUnavailable("pgbouncer not found: bash scripts/setup.sh installs it (apt pgbouncer)")
    return found


def pgbouncer_version() -> str:
    """`PgBouncer 1.18.0` -> `1.18.0`."""
    out = subprocess.run(
        [pgbouncer_program(), "--version"], capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.split()[1]


class PgBouncer:
    """One PgBouncer in `pool_mode` (session or transaction) in front of `server`."""

    host = LOOPBACK

    def __init__(self, server: PostgresServer, *, pool_mode: str, tls: TLSMaterial | None = None) -> None:
        self.server = server
        self.pool_mode = pool_mode
        self.program = pgbouncer_program()
        self.os_user: str | None = "postgres" if _is_root() else None
        self.port = free_port()
        self.base_dir = _make_dir("dbconfig-pgbouncer-", self.os_user)
        self.socket_dir = self.base_dir / "sock"
        self.socket_dir.mkdir()
        _chown(self.socket_dir, self.os_user)
        self.config_path = self.base_dir / "pgbouncer.ini"
        self.pid_path = self.base_dir / "pgbouncer.pid"
        self.log_path = self.base_dir / "pgbouncer.log"
        self.admin_password = secrets.token_hex(12)
        self.tls = tls
        self.ca_path: Path | None = None
        self.running = False
        _register(self)
        self._write_config()

    def __repr__(self) -> str:
        return f"<PgBouncer {self.pool_mode} {self.host}:{self.port} -> {self.server.port}>"

    def _write_config(self) -> None:
        users = self.base_dir / "userlist.txt"
        users.write_text(
            f'"{self.server.user}" "{self.server.password}"\n"{ADMIN_USER}" "{self.admin_password}"\n'
        )
        users.chmod(0o600)
        tls_lines = ""
        if self.tls is not None:
            cert = self.tls.issue_server_cert(self.base_dir / "tls", owner=self.os_user)
            self.ca_path = cert.ca_path
            tls_lines = (
                "client_tls_sslmode = allow\n"
                f"client_tls_cert_file = {cert.cert_path}\n"
                f"client_tls_key_file = {cert.key_path}\n"
            )
        self.config_path.write_text(
            "[databases]\n"
            f"* = host={self.server.host} port={self.server.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {LOOPBACK}\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.socket_dir}\n"
            f"pidfile = {self.pid_path}\n"
            f"logfile = {self.log_path}\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {users}\n"
            f"admin_users = {ADMIN_USER}\n"
            f"pool_mode = {self.pool_mode}\n"
            "default_pool_size = 10\n"
            "max_client_conn = 200\n"
            "server_tls_sslmode = disable\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n" + tls_lines
        )
        for path in (users, self.config_path):
            _chown(path, self.os_user)

    def start(self) -> PgBouncer:
        _run([self.program, "-d", str(self.config_path)], user=self.os_user, cwd=self.base_dir)
        try:
            _wait_for(self._accepting, timeout=START_TIMEOUT, what=f"{self!r} to accept connections")
        except ServerUnavailable as exc:
            raise ServerUnavailable(f"{exc}\nlog tail:\n{_tail(self.log_path)}") from None
        self.running = True
        return self

    def _accepting(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if not self.running:
            return
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_path.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)  # PgBouncer's immediate shutdown
            _wait_for(lambda: not _alive(pid), timeout=START_TIMEOUT, what="pgbouncer to stop")
        self.running = False

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            _unregister(self)

    def admin(self, command: str) -> list[tuple[Any, ...]]:
        """Run a command on PgBouncer's admin console (`SHOW VERSION`, `RECONNECT app`, ...)."""
        import psycopg

        with psycopg.connect(
            host=self.host,
            port=self.port,
            user=ADMIN_USER,
            password=self.admin_password,
            dbname="pgbouncer",
            sslmode="disable",
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            conn.prepare_threshold = None
            cur = conn.execute(command, prepare=False)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Pooled:
    """A fresh database on the throwaway server, owned by the app role, reached through `bouncer`."""

    bouncer: PgBouncer
    dbname: str

    @property
    def server(self) -> PostgresServer:
        return self.bouncer.server

    def alias(self, **keys: Any) -> dict[str, Any]:
        """The keys of an alias that reaches this database through PgBouncer."""
        return {
            "backend": "postgresql",
            "host": self.bouncer.host,
            "port": self.bouncer.port,
            "name": self.dbname,
            "user": self.server.user,
            "password": self.server.password,
            "sslmode": "disable",
            "pooler": self.bouncer.pool_mode,
            **keys,
        }

    def direct(self, **keys: Any) -> dict[str, Any]:
        """The keys of an alias that reaches the same database directly (no pooler)."""
        return {**self.alias(**keys), "host": self.server.host, "port": self.server.port, "pooler": None}


@pytest.fixture(scope="session")
def pooled_postgres() -> Iterator[PostgresServer]:
    """The PostgreSQL behind both PgBouncers (SCRAM-SHA-256 for the app role over TCP)."""
    with serving("throwaway PostgreSQL for PgBouncer", lambda: PostgresServer().__enter__()) as server:
        yield server


def _bouncer(server: PostgresServer, mode: str, tls: TLSMaterial) -> Iterator[PgBouncer]:
    def make() -> PgBouncer:
        bouncer = PgBouncer(server, pool_mode=mode, tls=tls)
        try:
            return bouncer.start()
        except BaseException:
            bouncer.cleanup()
            raise

    with serving(f"PgBouncer ({mode} mode)", make) as bouncer:
        yield bouncer


@pytest.fixture(scope="session")
def pgbouncer_transaction(pooled_postgres: PostgresServer, tls_ca: TLSMaterial) -> Iterator[PgBouncer]:
    """PgBouncer with pool_mode = transaction in front of `pooled_postgres`."""
    yield from _bouncer(pooled_postgres, "transaction", tls_ca)


@pytest.fixture(scope="session")
def pgbouncer_session(pooled_postgres: PostgresServer, tls_ca: TLSMaterial) -> Iterator[PgBouncer]:
    """PgBouncer with pool_mode = session in front of `pooled_postgres`."""
    yield from _bouncer(pooled_postgres, "session", tls_ca)


def _fresh_database(bouncer: PgBouncer) -> Iterator[Pooled]:
    server = bouncer.server
    name = f"pooled_{uuid.uuid4().hex[:10]}"
    server.psql(f'CREATE DATABASE "{name}" OWNER "{server.user}"', dbname="postgres")
    try:
        yield Pooled(bouncer, name)
    finally:
        server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dbname="postgres")


@pytest.fixture
def through_transaction_pooler(pgbouncer_transaction: PgBouncer) -> Iterator[Pooled]:
    """A fresh database reached through the transaction-mode PgBouncer."""
    yield from _fresh_database(pgbouncer_transaction)


@pytest.fixture
def through_session_pooler(pgbouncer_session: PgBouncer) -> Iterator[Pooled]:
    """A fresh database reached through the session-mode PgBouncer."""
    yield from _fresh_database(pgbouncer_session)
