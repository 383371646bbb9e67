"""PostgreSQL (psycopg 3): Django's backend, with the socket looked at before `SELECT 1`."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import NO_DB_ALIAS

from django_dbconfig.backends.postgresql.settings import PostgreSQL

if not PostgreSQL().driver_installed():
    raise ImproperlyConfigured(
        f"The PostgreSQL driver (psycopg or psycopg2) is not installed. Install it: {PostgreSQL.install}"
    )

from django.db.backends.postgresql import base as django_postgresql
from django.db.backends.postgresql.psycopg_any import is_psycopg3

if is_psycopg3:
    from psycopg import Connection, OperationalError
    from psycopg.pq import ConnStatus, TransactionStatus

from django_dbconfig.backends.base import credentials
from django_dbconfig.backends.base.asgi import ClosedAtAsgiRequestEnd, serving_asgi_request
from django_dbconfig.backends.base.demotion import DropsDemotedWriter
from django_dbconfig.backends.base.forks import ForkSafe
from django_dbconfig.backends.base.health import (
    DEAD,
    DEMOTED,
    HEALTHY,
    UNSURE,
    SocketHealthCheck,
    Verdict,
    socket_readable,
)
from django_dbconfig.backends.postgresql import pooler as poolers
from django_dbconfig.backends.postgresql.client import DatabaseClient
from django_dbconfig.backends.postgresql.connect import waiting_for_role
from django_dbconfig.backends.postgresql.settings import ASGI_POOL

# `pool: "asgi"` pools where a pool can be had: Django 5.1+ (which takes connections
# from `self.pool`), psycopg 3 and psycopg_pool. Elsewhere its connections are
# persistent, and those an ASGI request opens close when it ends.
ASGI_POOL_AVAILABLE = (
    is_psycopg3
    and hasattr(django_postgresql.DatabaseWrapper, "_connection_pools")
    and importlib.util.find_spec("psycopg_pool") is not None
)

# Django 5.1+'s pools by alias (an empty dict before: nothing is pooled there).
_connection_pools: dict[str, Any] = getattr(django_postgresql.DatabaseWrapper, "_connection_pools", {})

# More reads than this without reaching the end means a chatty, live connection.
_MAX_READS = 3

if is_psycopg3:
    # libpq's codes as plain ints: comparing with an enum member costs its lookup.
    _IDLE = int(TransactionStatus.IDLE)
    _UNKNOWN = int(TransactionStatus.UNKNOWN)
    _CONNECTION_OK = int(ConnStatus.OK)


def idle_verdict(conn: Connection[Any], readable: Callable[[int], bool]) -> Verdict:
    """Judge a psycopg connection from local state: healthy, dead, or unsure.

    Healthy when idle with nothing to read; dead when the server closed the socket.
    PostgreSQL may talk on an idle session without closing it: NOTIFY to a
    LISTEN-ing session, NOTICE and ParameterStatus messages. So a readable socket
    is not a verdict by itself. libpq reads what is there (`consume_input`, which
    also handles TLS records); reaching the end of the stream is a close, and
    anything else is unsure. Notifications read on the way go to the connection's
    notify handlers, as psycopg delivers them after a query.

    All of it runs under psycopg's connection lock, so a thread sharing the
    connection never has its reply read here. When another thread holds the lock
    (a query in flight), the answer is unsure: Django's `SELECT 1` then waits its
    turn, as it does with Django's engine.

    It runs before the first query of every request: the common case (idle, nothing
    to read) costs one libpq call, one poll and the lock, and nothing else.
    """
    lock = conn.lock
    if not lock.acquire(blocking=False):
        return DEAD if conn.broken else UNSURE
    try:
        pgconn = conn.pgconn
        # libpq answers UNKNOWN for a connection that is closed or broken.
        state = pgconn.transaction_status
        if state == _IDLE:
            if not readable(pgconn.socket):
                return HEALTHY
            return _read_pending(conn, readable)
        # In a transaction, or a query or COPY in progress: not for us to judge.
        return DEAD if state == _UNKNOWN else UNSURE
    finally:
        lock.release()


def _read_pending(conn: Connection[Any], readable: Callable[[int], bool]) -> Verdict:
    """An idle connection whose socket has something to read: a close, or messages."""
    pgconn = conn.pgconn
    for _ in range(_MAX_READS):
        try:
            pgconn.consume_input()
        except OperationalError:
            # libpq read the end of the stream: the server has closed the session.
            # What it read before the end is still buffered: deliver the notifications.
            _deliver_notifications(conn)
            return DEAD
        _deliver_notifications(conn)
        if pgconn.status != _CONNECTION_OK:
            return DEAD
        if not readable(pgconn.socket):
            # Messages were read, and nothing more is pending.
            return UNSURE
    return UNSURE


def _deliver_notifications(conn: Connection[Any]) -> None:
    """Hand the notifications libpq has buffered to psycopg, as a query would."""
    pgconn = conn.pgconn
    while (notify := pgconn.notifies()) is not None:
        if pgconn.notify_handler is not None:
            pgconn.notify_handler(notify)


def demotion_reason(conn: Any) -> str | None:
    """Why the server of a connection refuses writes as a whole, from what it reported
    without a query (ParameterStatus, PostgreSQL 14+), or None when it did not say so.

    `in_hot_standby` is on for a standby; `default_transaction_read_only` is on for a
    server made read-only (a fenced old primary), unless this session turned it on.
    """
    if is_psycopg3:
        # libpq's own call, with bytes: a fraction of the cost of conn.info's (about 1 µs for both).
        pgconn = conn.pgconn
        for key, why in _DEMOTED_STATUS_BYTES:
            if pgconn.parameter_status(key) == b"on":
                return why
        return None
    for name, why in DEMOTED_STATUS:
        if parameter_status(conn, name) == "on":
            return why
    return None


# What a server reports (ParameterStatus) when it refuses every write, and what that means.
DEMOTED_STATUS = (
    ("in_hot_standby", "it is a standby (in_hot_standby is on)"),
    ("default_transaction_read_only", "it is read-only (default_transaction_read_only is on)"),
)
_DEMOTED_STATUS_BYTES = tuple((name.encode(), why) for name, why in DEMOTED_STATUS)


def parameter_status(conn: Any, name: str) -> str | None:
    """A ParameterStatus value libpq holds for the connection (no round trip), or None."""
    if is_psycopg3:
        return conn.info.parameter_status(name)  # type: ignore[no-any-return]
    return conn.get_parameter_status(name)  # type: ignore[no-any-return]


def check_pooled_connection(conn: Connection[Any]) -> None:
    """psycopg_pool's `check=` callback: the socket first, an empty query only when unsure.

    Raises for a dead connection, which makes the pool discard it and hand out
    another.
    """
    verdict = idle_verdict(conn, socket_readable)
    if verdict is Verdict.DEAD:
        raise OperationalError("the server closed the idle pooled connection")
    if verdict is Verdict.UNSURE:
        from psycopg_pool import ConnectionPool  # optional: imported only when unsure

        ConnectionPool.check_connection(conn)


def check_pooled_writer(conn: Connection[Any]) -> None:
    """`check_pooled_connection` for a write alias's pool: a connection whose server
    reports itself a standby or read-only is discarded too."""
    check_pooled_connection(conn)
    why = demotion_reason(conn)
    if why is not None:
        # psycopg_pool puts a connection that failed its check back, and keeps it when it
        # is still open: closed, it is dropped and replaced.
        conn.close()
        raise OperationalError(f"the server of this pooled connection refuses writes: {why}")


class DatabaseWrapper(
    SocketHealthCheck,
    DropsDemotedWriter,
    ClosedAtAsgiRequestEnd,
    ForkSafe,
    django_postgresql.DatabaseWrapper,
):
    """Django's PostgreSQL `DatabaseWrapper`, with the health checks looking at the socket
    first (per request, and at each checkout from Django's pool), a password from
    `password_provider` for each new connection, and the session settings sent as SET
    behind a session pooler; dbshell runs with the alias's session settings, TLS and
    read-only mode. A lost connection's error names the alias, a write alias drops a
    connection whose server became a standby or read-only, an ASGI request closes the
    connections it opened, and a forked child never uses its parent's connection or pool.
    network_timeout needs nothing here: libpq's
    keepalive options are in OPTIONS.
    """

    def network_timeout_ms(self) -> int | None:
        value: Any = self.settings_dict["OPTIONS"].get("tcp_user_timeout")
        return int(value) if value else None

    def connection_lost(self, error: BaseException | None) -> bool:
        connection = self.connection
        if error is None or connection is None:
            return False
        # psycopg 3 marks the connection broken; psycopg2 closes it.
        return bool(getattr(connection, "broken", False) or connection.closed)

    client_class = DatabaseClient
    family = PostgreSQL()
    django_is_usable = staticmethod(django_postgresql.DatabaseWrapper.is_usable)

    # Whether this connection was opened for an ASGI request under `pool: "asgi"`:
    # decided when it opens, kept until it closes (back to the pool).
    pooled_for_asgi = False
    # Whether the per-request health check looks at this connection's socket (psycopg 3,
    # not pooled: a pool checks its connections itself). Decided when it opens.
    judged_by_socket = False
    # The pool this wrapper last found in Django's dict and made ready (credentials);
    # while the dict still holds it, `pool` answers with it at once.
    _ready_pool: Any = None

    def connect(self) -> None:
        self.pooled_for_asgi = (
            ASGI_POOL_AVAILABLE
            and "asgi_pool" in (self.settings_dict.get("DBCONFIG") or {})
            and serving_asgi_request()
        )
        self.judged_by_socket = is_psycopg3 and self.pool_keywords() is None
        super().connect()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.connection is None:
                # Decided again at the next connect.
                self.pooled_for_asgi = self.judged_by_socket = False

    def pool_keywords(self) -> dict[str, Any] | None:
        """psycopg_pool's keywords for this connection's pool, or None when it is not pooled."""
        if self.alias == NO_DB_ALIAS:
            return None
        always = self.settings_dict["OPTIONS"].get("pool")
        if always:
            return {} if always is True else dict(always)
        if self.pooled_for_asgi:
            return {**ASGI_POOL, **self.settings_dict["DBCONFIG"]["asgi_pool"]}
        return None

    @property
    def pool(self) -> Any:
        """The alias's pool (Django 5.1+) when this connection is pooled: always with `pool`
        true or an object, for connections opened by ASGI requests with `pool: "asgi"`.

        Made as Django makes its own (see pools.py), with a password asked for at each
        connection it opens, and each connection it hands out checked by
        `check_pooled_connection` when CONN_HEALTH_CHECKS is on.
        """
        # Django asks for it several times per checkout: the pool found last time, while
        # it is still the alias's, needs no more work. A pool dropped or replaced (a failed
        # server, close_pool(), a fork, a test changing settings) is looked up again.
        if not (self.pooled_for_asgi or self.settings_dict["OPTIONS"].get("pool")):
            return None
        ready = self._ready_pool
        if ready is not None and _connection_pools.get(self.alias) is ready:
            return ready
        self._ready_pool = pool = self.find_pool()
        return pool

    def find_pool(self) -> Any:
        """`pool` the long way: the alias's pool, made on first use, ready for this wrapper."""
        keywords = self.pool_keywords()
        if keywords is None:
            return None
        if (
            self.settings_dict["OPTIONS"].get("pool")
            and self.settings_dict.get("CONN_MAX_AGE", 0) != 0
            and self.alias not in _connection_pools
        ):
            # As Django's engine: a pool for every connection hands them back at the end of
            # each request, which CONN_MAX_AGE would contradict (build_databases() sets it to 0).
            raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
        try:
            from django_dbconfig.backends.postgresql import pools  # optional: needs psycopg_pool
        except ImportError as exc:
            raise ImproperlyConfigured(
                f'Alias "{self.alias}" has pool set, but psycopg_pool is not installed. '
                'Install it: pip install "django-dbconfig[postgresql]"'
            ) from exc
        pool = pools.pool_for(
            self.alias,
            keywords,
            connect_kwargs=self.get_connection_params,
            configure=self._configure_connection,
            check=self.pooled_check() if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
        )
        credentials.attach_to_pool(pool, self.alias, self.settings_dict)
        return pool

    def pooled_check(self) -> Callable[[Any], None]:
        """The check each pooled connection passes at checkout: the socket check, and for a
        write alias also whether its server now reports itself a standby or read-only."""
        return check_pooled_writer if self.meant_for_writes else check_pooled_connection

    def close_pool(self) -> None:
        """Close and forget the alias's pool, whichever kind: Django's own looks only at
        `self.pool`, which is None for a connection that `pool: "asgi"` did not pool (a test
        database dropped at teardown must not keep the ASGI pool's sessions)."""
        pool = _connection_pools.pop(self.alias, None)
        if pool is not None:
            pool.close()

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if self.pool:
            # The pool waits for a connection itself (its timeout), retrying in the background.
            return super().get_new_connection(conn_params)
        conn_params = credentials.with_password(conn_params, self.alias, self.settings_dict)
        return waiting_for_role(
            lambda: super(DatabaseWrapper, self).get_new_connection(conn_params),
            conn_params,
            alias=self.alias,
            retry_on=self.Database.OperationalError,
        )

    def _configure_connection(self, connection: Any) -> bool:
        # Django 5.1+: called for each new connection, its own or one the pool opens.
        commit = bool(super()._configure_connection(connection))  # type: ignore[misc]
        return poolers.apply_session_settings(connection, self.settings_dict) or commit

    def init_connection_state(self) -> None:
        super().init_connection_state()
        if not hasattr(django_postgresql.DatabaseWrapper, "_configure_connection"):
            # Django 4.2 has no _configure_connection (and no pool): set them here.
            applied = poolers.apply_session_settings(self.connection, self.settings_dict)
            if applied and not self.get_autocommit():
                self.connection.commit()

    def socket_verdict(self) -> Verdict:
        """`idle_verdict` of this connection, with psycopg 3 and no pool; demoted when the
        server of a write alias now reports itself a standby or read-only."""
        if not self.judged_by_socket:
            # With psycopg2, Django's check; with a pool, Django leaves
            # health to the pool's check.
            return UNSURE
        connection = self.connection
        verdict = idle_verdict(connection, self.socket_watch.readable)
        if verdict is DEAD or not self.meant_for_writes:
            return verdict
        # Unsure may mean a transaction or a query in progress (another thread's): not to be closed.
        if (verdict is HEALTHY or connection.pgconn.transaction_status == _IDLE) and demotion_reason(
            connection
        ):
            return DEMOTED
        return verdict

    def server_demoted(self, error: BaseException | None) -> str | None:
        if not self.family.refuses_write(error):
            return None
        # The session reports the server's state; both known and off means this session
        # chose read-only itself (SET TRANSACTION READ ONLY): not a demotion.
        why = demotion_reason(self.connection)
        if why is not None:
            return why
        if all(parameter_status(self.connection, name) == "off" for name, _ in DEMOTED_STATUS):
            return None
        return "it refused the write as read-only"

    def discard_connection(self) -> None:
        connection = self.connection
        if self.pool:
            # Closed before it goes back: the pool drops a closed connection. Its idle ones
            # may be on the same server: they are replaced as they come back or age.
            connection.close()
            drain = getattr(self.pool, "drain", None)
            if drain is not None:
                drain()
        self.close()
