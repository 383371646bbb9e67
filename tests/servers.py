"""Throwaway database servers (and a hung TCP listener) for the test suite.

Everything here starts its own short-lived server on 127.0.0.1 with a free port and
temporary directories; the shared servers on 5432/3306 are never touched.  Use the
pytest fixtures at the bottom via ``pytest_plugins = ["tests.servers"]``.

Only the standard library and pytest are imported at module level; trustme, psycopg
and MySQLdb are imported lazily so a missing driver turns into a skip, not an
import error.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import glob
import hashlib
import hmac
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Protocol, TypeVar

import pytest

if TYPE_CHECKING:
    import trustme

logger = logging.getLogger(__name__)

APP_USER = "app"
APP_PASSWORD = "app-secret-pw"
APP_DBNAME = "app"
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0
STOP_MODES = ("smart", "fast", "immediate")


class _Server(Protocol):
    def cleanup(self) -> None: ...


_S = TypeVar("_S", bound=_Server)


class ServerUnavailable(RuntimeError):
    """A throwaway server could not be set up (missing program, failed start, ...)."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


def _tmp_root() -> str:
    """Parent directory for temp dirs; must be traversable by the server users."""
    return os.environ.get("DBCONFIG_TEST_TMPDIR") or tempfile.gettempdir()


def _make_dir(prefix: str, owner: str | None = None) -> Path:
    """Create a fresh temp dir (mode 0755), chowned to *owner* when running as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=_tmp_root()))
    path.chmod(0o755)
    _chown(path, owner)
    return path


def _chown(path: Path, owner: str | None) -> None:
    if owner and _is_root():
        shutil.chown(path, user=owner, group=owner)


def _clean_env() -> dict[str, str]:
    """The environment without client variables (PGSSLMODE, MYSQL_PWD, ...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL", "MARIADB"))}


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _run(
    cmd: Sequence[str], *, user: str | None = None, cwd: Path | None = None, timeout: float = 120
) -> str:
    """Run *cmd* (as *user* via runuser when root); return its output, raise on failure.

    Output goes through a temp file, not a pipe, so a daemon that inherits the
    descriptors (pg_ctl start) cannot make us wait forever.
    """
    argv = list(cmd)
    if user and _is_root():
        argv = ["runuser", "-u", user, "--", *argv]
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=_clean_env(),
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            raise ServerUnavailable(f"program not found: {argv[0]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ServerUnavailable(f"{Path(cmd[0]).name} timed out after {timeout:.0f} s") from exc
        out.seek(0)
        output = out.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-20:])
        raise ServerUnavailable(f"{Path(cmd[0]).name} failed (exit {proc.returncode}):\n{tail}")
    return output


def _wait_for(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll *check* until it returns true; raise ServerUnavailable after *timeout* s."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _scram_sha256_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL SCRAM-SHA-256 verifier, so the plain password never reaches the server."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _mysql_native_hash(password: str) -> str:
    """mysql_native_password hash (``*HEX``), for ``IDENTIFIED BY PASSWORD``."""
    inner = hashlib.sha1(password.encode(), usedforsecurity=False).digest()
    return "*" + hashlib.sha1(inner, usedforsecurity=False).hexdigest().upper()


_LIVE: dict[int, Any] = {}


def _register(server: Any) -> None:
    _LIVE[id(server)] = server


def _unregister(server: Any) -> None:
    _LIVE.pop(id(server), None)


@atexit.register
def _cleanup_leftovers() -> None:
    """Last-resort cleanup for servers a crashed test run did not clean up."""
    for server in list(_LIVE.values()):
        try:
            server.cleanup()
        except Exception:
            logger.exception("cleanup of %r at exit failed", server)


# ------------------------------------------------------------------------------- TLS


class ServerCert(NamedTuple):
    """Paths of a server certificate, its key and the CA that signed it."""

    cert_path: Path
    key_path: Path
    ca_path: Path


class TLSMaterial:
    """A test CA (plus an unrelated "wrong" CA) and files written to a temp dir.

    ``directory`` holds ``ca.pem``, ``wrong_ca.pem``, ``server.crt`` and
    ``server.key`` (for "localhost" and "127.0.0.1").  Servers get their own copies via
    :meth:`issue_server_cert`, owned by the server user as PostgreSQL requires.
    """

    def __init__(self, directory: Path | None = None) -> None:
        try:
            import trustme
        except ImportError as exc:
            raise ServerUnavailable("trustme is not installed") from exc
        self._owns_directory = directory is None
        self.directory = directory or _make_dir("dbconfig-tls-")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca: trustme.CA = trustme.CA()
        self.wrong_ca: trustme.CA = trustme.CA()
        self.ca_path = self.directory / "ca.pem"
        self.wrong_ca_path = self.directory / "wrong_ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self.wrong_ca.cert_pem.write_to_path(str(self.wrong_ca_path))
        for path in (self.ca_path, self.wrong_ca_path):
            path.chmod(0o644)
        default = self.issue_server_cert(self.directory)
        self.server_cert_path = default.cert_path
        self.server_key_path = default.key_path

    def issue_server_cert(
        self,
        dest: Path,
        hostnames: Sequence[str] = ("localhost", LOOPBACK),
        owner: str | None = None,
    ) -> ServerCert:
        """Write server.crt/server.key (0600, owned by *owner*) and ca.pem into *dest*."""
        leaf = self.ca.issue_cert(*hostnames)
        dest.mkdir(parents=True, exist_ok=True)
        cert_path, key_path, ca_path = dest / "server.crt", dest / "server.key", dest / "ca.pem"
        cert_path.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        key_path.touch(mode=0o600)
        key_path.chmod(0o600)
        key_path.write_bytes(leaf.private_key_pem.bytes())
        if ca_path != self.ca_path:
            ca_path.write_bytes(self.ca.cert_pem.bytes())
        cert_path.chmod(0o644)
        ca_path.chmod(0o644)
        for path in (dest, cert_path, key_path, ca_path):
            _chown(path, owner)
        return ServerCert(cert_path, key_path, ca_path)

    def cleanup(self) -> None:
        """Delete the directory if this object created it."""
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def make_ca(directory: Path | None = None) -> TLSMaterial:
    """Create a test CA, a wrong CA and a localhost server cert (see TLSMaterial)."""
    return TLSMaterial(directory)


def _cert_hostnames(cert_hostname: str) -> tuple[str, ...]:
    return ("localhost", LOOPBACK) if cert_hostname == "localhost" else (cert_hostname,)


# ------------------------------------------------------------------------ PostgreSQL


def pg_bindir() -> Path:
    """Directory with initdb/pg_ctl/pg_basebackup (env PG_BINDIR, pg_config, Debian dirs)."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
        )
        candidates.append(out.stdout.strip())

    def version(path: str) -> int:
        name = Path(path).parent.name
        return int(name) if name.isdigit() else 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    raise ServerUnavailable(
        "PostgreSQL server programs (initdb, pg_ctl) not found; install the postgresql "
        "server package or set PG_BINDIR"
    )


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (run as the ``postgres`` user if root).

    Role ``app`` (password ``app-secret-pw``, scram-sha-256 over TCP) owns database
    ``app``; role ``postgres`` is trusted over TCP and the Unix socket.
    """

    kind = "PostgreSQL"
    host = LOOPBACK
    superuser = "postgres"
    user = APP_USER
    password = APP_PASSWORD
    dbname = APP_DBNAME

    def __init__(
        self,
        *,
        tls: bool = False,
        cert_hostname: str = "localhost",
        tls_material: TLSMaterial | None = None,
        require_ssl: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare (but do not start) a server; ``settings`` are extra postgresql.conf lines.

        With ``require_ssl`` the ``app`` role may only connect with TLS (hostssl).
        """
        self.bindir = pg_bindir()
        self.os_user: str | None = "postgres" if _is_root() else None
        self.tls = tls
        self.cert_hostname = cert_hostname
        self.require_ssl = require_ssl
        self.extra_settings = dict(settings or {})
        self.port = free_port()
        self.base_dir = _make_dir("dbconfig-pg-", self.os_user)
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.socket_dir.mkdir()
        _chown(self.socket_dir, self.os_user)
        self.log_path = self.base_dir / "server.log"
        self.ca_path: Path | None = None
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self._owned_tls: TLSMaterial | None = None
        self.tls_material: TLSMaterial | None = None
        self.running = False
        self.initialized = False
        self.start_seconds: float | None = None
        self._ever_started = False
        _register(self)
        if tls:
            if tls_material is None:
                tls_material = self._owned_tls = make_ca()
            self.tls_material = tls_material
            files = tls_material.issue_server_cert(
                self.base_dir / "tls", _cert_hostnames(cert_hostname), self.os_user
            )
            self.cert_path, self.key_path, self.ca_path = files

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} tls={self.tls}>"

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- setup

    def _initialize(self) -> None:
        """Create the cluster with initdb."""
        _run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.data_dir),
                "-U", self.superuser,
                "-A", "trust",
                "-E", "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            user=self.os_user,
            cwd=self.base_dir,
        )  # fmt: skip
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'dbconfig_test.conf'\n")

    def _settings(self) -> dict[str, str]:
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "100",
            "autovacuum": "off",
            "wal_level": "replica",
            "max_wal_senders": "5",
            "wal_keep_size": "64MB",
            "hot_standby": "on",
            "password_encryption": "'scram-sha-256'",
            "lc_messages": "'C'",
            "timezone": "'UTC'",
            "log_min_messages": "warning",
            "ssl": "off",
        }
        if self.tls:
            settings |= {
                "ssl": "on",
                "ssl_cert_file": f"'{self.cert_path}'",
                "ssl_key_file": f"'{self.key_path}'",
                "ssl_ca_file": f"'{self.ca_path}'",
            }
        settings |= self.extra_settings
        return settings

    def _hba(self) -> str:
        app_type = "hostssl" if self.tls and self.require_ssl else "host"
        net = f"{LOOPBACK}/32"
        return (
            "# TYPE   DATABASE     USER      ADDRESS  METHOD\n"
            "local    all          all                trust\n"
            "local    replication  postgres           trust\n"
            f"host     all          postgres  {net}    trust\n"
            f"host     replication  postgres  {net}    trust\n"
            f"{app_type:<8} all          {self.user}       {net}    scram-sha-256\n"
        )

    def _write_config(self) -> None:
        conf = "".join(f"{key} = {value}\n" for key, value in self._settings().items())
        for name, text in (("dbconfig_test.conf", conf), ("pg_hba.conf", self._hba())):
            path = self.data_dir / name
            path.write_text(text)
            _chown(path, self.os_user)

    def _create_app_objects(self) -> None:
        from psycopg import sql

        verifier = _scram_sha256_verifier(self.password)
        self.psql(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
            .format(sql.Identifier(self.user), sql.Literal(verifier))
            .as_string(None),
            dbname="postgres",
        )
        self.psql(
            sql.SQL("CREATE DATABASE {} OWNER {}")
            .format(sql.Identifier(self.dbname), sql.Identifier(self.user))
            .as_string(None),
            dbname="postgres",
        )

    # -- lifecycle

    def _pg_ctl(self, *args: str, timeout: float = START_TIMEOUT) -> str:
        return _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args],
            user=self.os_user,
            cwd=self.base_dir,
            timeout=timeout + 10,
        )

    def start(self) -> PostgresServer:
        """Start (initializing on first use) and wait until connections are accepted."""
        if self.running:
            return self
        t0 = time.monotonic()
        if not self.initialized:
            self._initialize()
            self.initialized = True
        for attempt in range(3):
            self._write_config()
            try:
                self._pg_ctl("start", "-w", "-t", str(int(START_TIMEOUT)), "-l", str(self.log_path))
                break
            except ServerUnavailable as exc:
                log = _tail(self.log_path)
                if not self._ever_started and attempt < 2 and "could not bind" in log:
                    logger.info("port %s taken, retrying with another one", self.port)
                    self.port = free_port()
                    continue
                raise ServerUnavailable(
                    f"{self.kind} did not start on port {self.port}: {exc}\nlog tail:\n{log}"
                ) from None
        self.running = True
        if not self._ever_started:
            self._ever_started = True
            self._after_first_start()
        self.start_seconds = time.monotonic() - t0
        logger.info("%r started in %.2f s", self, self.start_seconds)
        return self

    def _after_first_start(self) -> None:
        self._create_app_objects()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server with ``pg_ctl stop -m mode`` (smart, fast or immediate)."""
        if mode not in STOP_MODES:
            raise ValueError(f"mode must be one of {STOP_MODES}")
        if not self.running:
            return
        try:
            self._pg_ctl("stop", "-m", mode, "-w", "-t", str(int(STOP_TIMEOUT)), timeout=STOP_TIMEOUT)
        except ServerUnavailable:
            logger.warning("pg_ctl stop failed for %r; killing it", self, exc_info=True)
            self._kill()
        self.running = False

    def _kill(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    def restart(self) -> PostgresServer:
        """Stop (fast) and start again with the same port and data."""
        self.stop("fast")
        return self.start()

    def cleanup(self) -> None:
        """Stop the server (if running) and delete all its files."""
        try:
            self.stop("immediate")
        except Exception:
            logger.exception("stopping %r failed", self)
            self._kill()
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._owned_tls is not None:
            self._owned_tls.cleanup()
        _unregister(self)

    # -- clients

    def psql(
        self, sql: str, params: Sequence[Any] | None = None, *, dbname: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run *sql* as the superuser over the Unix socket (autocommit); return rows."""
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.superuser,
            dbname=dbname or self.dbname,
            sslmode="disable",
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """psycopg.connect() keywords for the ``app`` role over TCP."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
        }
        return kwargs | overrides

    def url(self, **query: str) -> str:
        """``postgres://app:...@127.0.0.1:port/app`` with optional query parameters."""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        base = f"postgres://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"
        return f"{base}?{qs}" if qs else base


class PostgresReplica(PostgresServer):
    """A hot-standby streaming replica of *primary*, made with ``pg_basebackup -R``."""

    def __init__(self, primary: PostgresServer, *, apply_delay_ms: int = 0) -> None:
        self.primary = primary
        self.apply_delay_ms = apply_delay_ms
        super().__init__(
            tls=primary.tls,
            cert_hostname=primary.cert_hostname,
            tls_material=primary.tls_material,
            require_ssl=primary.require_ssl,
            settings=primary.extra_settings,
        )

    def _initialize(self) -> None:
        _run(
            [
                str(self.bindir / "pg_basebackup"),
                "-h", LOOPBACK,
                "-p", str(self.primary.port),
                "-U", self.primary.superuser,
                "-D", str(self.data_dir),
                "-R",
                "-X", "stream",
                "-c", "fast",
                "--no-sync",
            ],
            user=self.os_user,
            cwd=self.base_dir,
        )  # fmt: skip

    def _settings(self) -> dict[str, str]:
        return super()._settings() | {
            "hot_standby": "on",
            "recovery_min_apply_delay": f"'{int(self.apply_delay_ms)}ms'",
        }

    def _after_first_start(self) -> None:
        """Nothing to create: the replica is read-only and copies the primary."""

    def wait_until_replicating(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the WAL receiver is streaming from the primary."""

        def streaming() -> bool:
            rows = self.psql("SELECT status FROM pg_stat_wal_receiver", dbname="postgres")
            return bool(rows) and rows[0][0] == "streaming"

        _wait_for(streaming, timeout=timeout, what=f"{self!r} to stream from the primary")


def start_replica(primary: PostgresServer, *, apply_delay_ms: int, wait: bool = True) -> PostgresReplica:
    """Create, start and (with *wait*) wait for a streaming replica of *primary*."""
    replica = PostgresReplica(primary, apply_delay_ms=apply_delay_ms)
    try:
        replica.start()
        if wait:
            replica.wait_until_replicating()
    except BaseException:
        replica.cleanup()
        raise
    return replica


# --------------------------------------------------------------------------- MariaDB


def _find_program(*names: str) -> str:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    raise ServerUnavailable(f"MariaDB program not found: {' or '.join(names)}")


def _import_mysqldb() -> Any:
    try:
        import MySQLdb
    except ImportError as exc:
        raise ServerUnavailable("mysqlclient (MySQLdb) is not installed") from exc
    return MySQLdb


class MariaDBServer:
    """A throwaway MariaDB server on 127.0.0.1 (mariadbd runs as ``mysql`` if root).

    Users ``'app'@'%'`` and ``'app'@'localhost'`` (password ``app-secret-pw``) have all
    privileges on database ``app``; ``root`` has no password (use the socket).
    """

    kind = "MariaDB"
    host = LOOPBACK
    superuser = "root"
    user = APP_USER
    password = APP_PASSWORD
    dbname = APP_DBNAME

    def __init__(
        self,
        *,
        tls: bool = False,
        cert_hostname: str = "localhost",
        tls_material: TLSMaterial | None = None,
        require_secure_transport: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Prepare (but do not start) a server; ``extra_args`` go to mariadbd."""
        self.mariadbd = _find_program("mariadbd", "mysqld")
        self.install_db = _find_program("mariadb-install-db", "mysql_install_db")
        self.os_user: str | None = "mysql" if _is_root() else None
        self.tls = tls
        self.cert_hostname = cert_hostname
        self.require_secure_transport = require_secure_transport
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.base_dir = _make_dir("dbconfig-mdb-", self.os_user)
        self.data_dir = self.base_dir / "data"
        self.socket_path = self.base_dir / "mysqld.sock"
        self.pid_path = self.base_dir / "mysqld.pid"
        self.log_path = self.base_dir / "error.log"
        self.ca_path: Path | None = None
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        self._owned_tls: TLSMaterial | None = None
        self.tls_material: TLSMaterial | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.initialized = False
        self.start_seconds: float | None = None
        self._ever_started = False
        _register(self)
        if tls:
            if tls_material is None:
                tls_material = self._owned_tls = make_ca()
            self.tls_material = tls_material
            files = tls_material.issue_server_cert(
                self.base_dir / "tls", _cert_hostnames(cert_hostname), self.os_user
            )
            self.cert_path, self.key_path, self.ca_path = files

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} tls={self.tls}>"

    def __enter__(self) -> MariaDBServer:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def socket_dir(self) -> Path:
        """Directory containing the Unix socket."""
        return self.socket_path.parent

    @property
    def running(self) -> bool:
        """Whether the mariadbd process is alive."""
        return self.process is not None and self.process.poll() is None

    def _initialize(self) -> None:
        args = [
            self.install_db,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            *self._innodb_args(),
        ]
        if self.os_user:
            args.append(f"--user={self.os_user}")
        _run(args, cwd=self.base_dir)

    @staticmethod
    def _innodb_args() -> list[str]:
        return [
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
        ]

    def _server_args(self) -> list[str]:
        args = [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket_path}",
            f"--port={self.port}",
            f"--bind-address={LOOPBACK}",
            f"--pid-file={self.pid_path}",
            f"--log-error={self.log_path}",
            f"--tmpdir={self.base_dir}",
            "--skip-log-bin",
            "--skip-name-resolve",
            "--performance-schema=OFF",
            "--max-connections=100",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            *self._innodb_args(),
        ]
        if self.os_user:
            args.append(f"--user={self.os_user}")
        if self.tls:
            args += [
                f"--ssl-ca={self.ca_path}",
                f"--ssl-cert={self.cert_path}",
                f"--ssl-key={self.key_path}",
            ]
        if self.require_secure_transport:
            args.append("--require-secure-transport=ON")
        return args + self.extra_args

    def _root_connect(self, dbname: str | None = None, timeout: int = 10) -> Any:
        mysqldb = _import_mysqldb()
        kwargs: dict[str, Any] = {
            "unix_socket": str(self.socket_path),
            "user": self.superuser,
            "connect_timeout": timeout,
            "autocommit": True,
        }
        if dbname:
            kwargs["database"] = dbname
        return mysqldb.connect(**kwargs)

    def _ready(self) -> bool:
        import MySQLdb

        if self.process is not None and self.process.poll() is not None:
            raise ServerUnavailable(f"mariadbd exited with code {self.process.returncode}")
        if not self.socket_path.exists():
            return False
        try:
            self._root_connect(timeout=2).close()
        except MySQLdb.OperationalError:
            return False
        return True

    def start(self) -> MariaDBServer:
        """Start (initializing on first use) and wait until connections are accepted."""
        if self.running:
            return self
        t0 = time.monotonic()
        _import_mysqldb()  # fail early, before initializing anything
        if not self.initialized:
            self._initialize()
            self.initialized = True
        for attempt in range(3):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.process = subprocess.Popen(
                self._server_args(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.base_dir,
                env=_clean_env(),
                start_new_session=True,
            )
            try:
                _wait_for(self._ready, timeout=START_TIMEOUT, what="mariadbd")
                break
            except ServerUnavailable as exc:
                self._kill()
                log = _tail(self.log_path)
                new_log = self._log_since(log_start)
                if not self._ever_started and attempt < 2 and "Address already in use" in new_log:
                    logger.info("port %s taken, retrying with another one", self.port)
                    self.port = free_port()
                    continue
                raise ServerUnavailable(
                    f"{self.kind} did not start on port {self.port}: {exc}\nlog tail:\n{log}"
                ) from None
        if not self._ever_started:
            self._ever_started = True
            self._create_app_objects()
        self.start_seconds = time.monotonic() - t0
        logger.info("%r started in %.2f s", self, self.start_seconds)
        return self

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def _create_app_objects(self) -> None:
        import MySQLdb

        pw_hash = _mysql_native_hash(self.password)
        statements = [f"CREATE DATABASE IF NOT EXISTS `{self.dbname}`"]
        for host in ("%", "localhost"):
            account = f"'{self.user}'@'{host}'"
            statements += [
                f"CREATE USER {account} IDENTIFIED BY PASSWORD '{pw_hash}'",
                f"GRANT ALL PRIVILEGES ON `{self.dbname}`.* TO {account}",
            ]
        for statement in statements:
            try:
                self.sql(statement, dbname="")
            except MySQLdb.Error as exc:
                # Do not chain: the server's message may quote the statement.
                raise ServerUnavailable(
                    f"creating the {self.user!r} account/database failed (error {exc.args[0]})"
                ) from None

    def stop(self, mode: str = "fast") -> None:
        """Stop mariadbd: smart/fast = SIGTERM (clean shutdown), immediate = SIGKILL."""
        if mode not in STOP_MODES:
            raise ValueError(f"mode must be one of {STOP_MODES}")
        if self.process is None:
            return
        if self.process.poll() is None:
            if mode == "immediate":
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("%r did not stop within %.0f s; killing it", self, STOP_TIMEOUT)
                self._kill()
        self.process = None

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def restart(self) -> MariaDBServer:
        """Stop (fast) and start again with the same port and data."""
        self.stop("fast")
        return self.start()

    def cleanup(self) -> None:
        """Stop the server (if running) and delete all its files."""
        try:
            self.stop("immediate")
        except Exception:
            logger.exception("stopping %r failed", self)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._owned_tls is not None:
            self._owned_tls.cleanup()
        _unregister(self)

    def sql(
        self, statement: str, params: Sequence[Any] | None = None, *, dbname: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one statement as root over the Unix socket (autocommit); return rows.

        ``dbname=None`` uses the ``app`` database; ``""`` selects no database.
        """
        conn = self._root_connect(self.dbname if dbname is None else dbname)
        try:
            cur = conn.cursor()
            cur.execute(statement, params)
            return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def connect_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """MySQLdb.connect() keywords for the ``app`` user over TCP."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.dbname,
        }
        return kwargs | overrides

    def url(self, **query: str) -> str:
        """``mysql://app:...@127.0.0.1:port/app`` with optional query parameters."""
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        base = f"mysql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"
        return f"{base}?{qs}" if qs else base


# ------------------------------------------------------------------------ HungServer


class HungServer:
    """A 127.0.0.1 TCP listener that accepts connections and never sends a byte."""

    host = LOOPBACK

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="HungServer", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<HungServer {self.host}:{self.port}>"

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self._conns.append(conn)

    @property
    def accepted(self) -> int:
        """How many connections have been accepted so far."""
        return len(self._conns)

    def close(self) -> None:
        """Stop listening and close every accepted connection."""
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> HungServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------------- fixtures


class ReplicaPair(NamedTuple):
    """A primary and its delayed streaming replica."""

    primary: PostgresServer
    replica: PostgresReplica

    def cleanup(self) -> None:
        """Remove both servers."""
        self.replica.cleanup()
        self.primary.cleanup()


def server_unavailable(what: str, exc: BaseException) -> NoReturn:
    """Fail (when CI=true) or skip the requesting test because *what* cannot run."""
    msg = f"{what} unavailable: {exc}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@contextlib.contextmanager
def serving(what: str, factory: Callable[[], _S]) -> Iterator[_S]:
    """Get a started server from *factory* (skip/fail if impossible); clean it up after.

    *factory* must clean up whatever it created before raising.
    """
    try:
        server = factory()
    except Exception as exc:
        server_unavailable(what, exc)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def tls_ca() -> Iterator[TLSMaterial]:
    """Session test CA (``ca_path``, ``wrong_ca_path``, ``issue_server_cert()``)."""
    with serving("TLS test CA (trustme)", make_ca) as material:
        yield material


@pytest.fixture(scope="session")
def pg_tls_server(tls_ca: TLSMaterial) -> Iterator[PostgresServer]:
    """PostgreSQL with ssl=on and a cert for localhost/127.0.0.1 (TLS optional for app)."""
    with serving(
        "throwaway PostgreSQL (TLS)",
        lambda: PostgresServer(tls=True, tls_material=tls_ca).__enter__(),
    ) as server:
        yield server


@pytest.fixture(scope="session")
def pg_plain_server() -> Iterator[PostgresServer]:
    """PostgreSQL without TLS."""
    with serving("throwaway PostgreSQL", lambda: PostgresServer().__enter__()) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_tls_server(tls_ca: TLSMaterial) -> Iterator[MariaDBServer]:
    """MariaDB with --ssl-ca/--ssl-cert/--ssl-key (TLS not required)."""
    with serving(
        "throwaway MariaDB (TLS)",
        lambda: MariaDBServer(tls=True, tls_material=tls_ca).__enter__(),
    ) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_plain_server() -> Iterator[MariaDBServer]:
    """MariaDB without TLS."""
    with serving("throwaway MariaDB", lambda: MariaDBServer().__enter__()) as server:
        yield server


@pytest.fixture(scope="session")
def pg_replica_pair() -> Iterator[ReplicaPair]:
    """A plain primary and a hot-standby replica with a 1500 ms apply delay."""

    def make() -> ReplicaPair:
        primary = PostgresServer().__enter__()
        try:
            return ReplicaPair(primary, start_replica(primary, apply_delay_ms=1500))
        except BaseException:
            primary.cleanup()
            raise

    with serving("throwaway PostgreSQL primary/replica", make) as pair:
        yield pair


@pytest.fixture
def hung_server() -> Iterator[HungServer]:
    """A listener that accepts TCP connections and never answers."""
    with HungServer() as server:
        yield server


@pytest.fixture
def pg_server_factory(tls_ca: TLSMaterial) -> Iterator[Callable[..., PostgresServer]]:
    """Start extra PostgreSQL servers, e.g. ``factory(tls=True, cert_hostname="x")``.

    TLS servers use the session ``tls_ca``; all are removed after the test.
    """
    servers: list[PostgresServer] = []

    def factory(**kwargs: Any) -> PostgresServer:
        kwargs.setdefault("tls_material", tls_ca)
        try:
            server = PostgresServer(**kwargs)
        except Exception as exc:
            server_unavailable("throwaway PostgreSQL", exc)
        servers.append(server)
        try:
            return server.start()
        except Exception as exc:
            server_unavailable("throwaway PostgreSQL", exc)

    yield factory
    for server in servers:
        server.cleanup()


@pytest.fixture
def mariadb_server_factory(tls_ca: TLSMaterial) -> Iterator[Callable[..., MariaDBServer]]:
    """Start extra MariaDB servers, e.g. ``factory(tls=True, require_secure_transport=True)``."""
    servers: list[MariaDBServer] = []

    def factory(**kwargs: Any) -> MariaDBServer:
        kwargs.setdefault("tls_material", tls_ca)
        try:
            server = MariaDBServer(**kwargs)
        except Exception as exc:
            server_unavailable("throwaway MariaDB", exc)
        servers.append(server)
        try:
            return server.start()
        except Exception as exc:
            server_unavailable("throwaway MariaDB", exc)

    yield factory
    for server in servers:
        server.cleanup()
