"""Tests for the throwaway servers in tests/servers.py."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.servers import (
    HungServer,
    MariaDBServer,
    PostgresServer,
    ReplicaPair,
    TLSMaterial,
    free_port,
)

pytest_plugins = ["tests.servers"]

psycopg = pytest.importorskip("psycopg")


def _poll(check: Callable[[], bool], timeout: float = 15.0) -> float:
    """Poll *check* until true; return the elapsed seconds."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "condition not reached in time"
        time.sleep(0.02)
    return time.monotonic() - t0


def _pg_scalar(**kwargs: Any) -> Any:
    query = kwargs.pop("query")
    with psycopg.connect(connect_timeout=5, **kwargs) as conn:
        return conn.execute(query).fetchone()[0]


def _mysqldb() -> Any:
    return pytest.importorskip("MySQLdb")


def _mysql_ssl_cipher(**kwargs: Any) -> str:
    conn = _mysqldb().connect(connect_timeout=5, **kwargs)
    try:
        cur = conn.cursor()
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        return str(cur.fetchone()[1])
    finally:
        conn.close()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


# ------------------------------------------------------------------------ PostgreSQL


@pytest.mark.postgresql
@pytest.mark.slow
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_pg_tls_verify_full(pg_tls_server: PostgresServer, tls_ca: TLSMaterial, host: str) -> None:
    assert pg_tls_server.ca_path is not None
    ssl = _pg_scalar(
        **pg_tls_server.connect_kwargs(
            host=host, sslmode="verify-full", sslrootcert=str(pg_tls_server.ca_path)
        ),
        query="SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    assert ssl is True


@pytest.mark.postgresql
@pytest.mark.slow
def test_pg_tls_wrong_ca_fails(pg_tls_server: PostgresServer, tls_ca: TLSMaterial) -> None:
    kwargs = pg_tls_server.connect_kwargs(
        host="localhost", sslmode="verify-ca", sslrootcert=str(tls_ca.wrong_ca_path)
    )
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(connect_timeout=5, **kwargs)


@pytest.mark.postgresql
@pytest.mark.slow
def test_pg_wrong_password_rejected(pg_tls_server: PostgresServer) -> None:
    kwargs = pg_tls_server.connect_kwargs(password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(connect_timeout=5, **kwargs)


@pytest.mark.postgresql
@pytest.mark.slow
def test_pg_hostname_mismatch(pg_server_factory: Callable[..., PostgresServer], tls_ca: TLSMaterial) -> None:
    server = pg_server_factory(tls=True, cert_hostname="db.example.invalid")
    kwargs = server.connect_kwargs(host="localhost", sslrootcert=str(tls_ca.ca_path))
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(connect_timeout=5, sslmode="verify-full", **kwargs)
    # Same chain, no host-name check: accepted.
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    assert _pg_scalar(sslmode="verify-ca", query=query, **kwargs) is True


@pytest.mark.postgresql
@pytest.mark.slow
def test_pg_plain_refuses_sslmode_require(pg_plain_server: PostgresServer) -> None:
    assert pg_plain_server.ca_path is None
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(connect_timeout=5, **pg_plain_server.connect_kwargs(sslmode="require"))
    assert _pg_scalar(**pg_plain_server.connect_kwargs(), query="SELECT current_user") == "app"


@pytest.mark.postgresql
@pytest.mark.slow
def test_replica_applies_after_delay(pg_replica_pair: ReplicaPair) -> None:
    primary, replica = pg_replica_pair
    assert replica.psql("SELECT pg_is_in_recovery()") == [(True,)]
    primary.psql("CREATE TABLE IF NOT EXISTS delay_probe (token text); GRANT SELECT ON delay_probe TO app")
    _poll(lambda: bool(replica.psql("SELECT to_regclass('delay_probe')")[0][0]))

    token = secrets.token_hex(8)
    t0 = time.monotonic()
    primary.psql("INSERT INTO delay_probe VALUES (%s)", [token])
    visible = "SELECT count(*) FROM delay_probe WHERE token = %s"
    assert replica.psql(visible, [token]) == [(0,)]
    _poll(lambda: replica.psql(visible, [token]) == [(1,)])
    elapsed = time.monotonic() - t0
    assert 1.3 <= elapsed < 10, elapsed
    # The app role can read the replica over TCP.
    assert _pg_scalar(**replica.connect_kwargs(), query="SELECT count(*) FROM delay_probe") >= 1


@pytest.mark.postgresql
@pytest.mark.slow
def test_pg_restart_and_cleanup(pg_server_factory: Callable[..., PostgresServer]) -> None:
    server = pg_server_factory()
    port = server.port
    server.psql("CREATE TABLE survivor (x int); INSERT INTO survivor VALUES (42)")
    server.restart()
    assert server.port == port
    assert server.psql("SELECT x FROM survivor") == [(42,)]
    assert _pg_scalar(**server.connect_kwargs(), query="SELECT 1") == 1
    server.cleanup()
    assert not server.base_dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(connect_timeout=2, **server.connect_kwargs())


# --------------------------------------------------------------------------- MariaDB


@pytest.mark.mariadb
@pytest.mark.slow
def test_mariadb_tls_session(mariadb_tls_server: MariaDBServer) -> None:
    ca = str(mariadb_tls_server.ca_path)
    kwargs = mariadb_tls_server.connect_kwargs(ssl={"ca": ca}, ssl_mode="VERIFY_IDENTITY")
    assert _mysql_ssl_cipher(**kwargs) != ""


@pytest.mark.mariadb
@pytest.mark.slow
def test_mariadb_wrong_ca_fails(mariadb_tls_server: MariaDBServer, tls_ca: TLSMaterial) -> None:
    kwargs = mariadb_tls_server.connect_kwargs(ssl={"ca": str(tls_ca.wrong_ca_path)}, ssl_mode="VERIFY_CA")
    with pytest.raises(_mysqldb().OperationalError):
        _mysql_ssl_cipher(**kwargs)


@pytest.mark.mariadb
@pytest.mark.slow
def test_mariadb_plain(mariadb_plain_server: MariaDBServer) -> None:
    assert mariadb_plain_server.ca_path is None
    assert _mysql_ssl_cipher(**mariadb_plain_server.connect_kwargs()) == ""
    assert mariadb_plain_server.sql("SELECT DATABASE()") == [("app",)]


@pytest.mark.mariadb
@pytest.mark.slow
def test_mariadb_require_secure_transport(
    mariadb_server_factory: Callable[..., MariaDBServer],
) -> None:
    server = mariadb_server_factory(tls=True, require_secure_transport=True)
    # MariaDB answers an insecure login with plain "Access denied" (1045).
    with pytest.raises(_mysqldb().OperationalError):
        _mysql_ssl_cipher(**server.connect_kwargs())
    assert _mysql_ssl_cipher(**server.connect_kwargs(ssl={"ca": str(server.ca_path)})) != ""


@pytest.mark.mariadb
@pytest.mark.slow
def test_mariadb_restart(mariadb_server_factory: Callable[..., MariaDBServer]) -> None:
    server = mariadb_server_factory()
    port = server.port
    server.sql("CREATE TABLE survivor (x int)")
    server.sql("INSERT INTO survivor VALUES (42)")
    server.restart()
    assert server.port == port
    assert server.sql("SELECT x FROM survivor") == [(42,)]
    assert _mysql_ssl_cipher(**server.connect_kwargs()) == ""


# ------------------------------------------------------------------------ HungServer


def test_hung_server_times_out_psycopg(hung_server: HungServer) -> None:
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=hung_server.host, port=hung_server.port, user="x", dbname="x", connect_timeout=2)
    elapsed = time.monotonic() - t0
    assert 1.5 <= elapsed < 4, elapsed
    assert hung_server.accepted >= 1


def test_hung_server_close_releases_port() -> None:
    with HungServer() as server:
        port = server.port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
