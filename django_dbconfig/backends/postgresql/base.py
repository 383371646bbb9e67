"""PostgreSQL (psycopg 3): Django's backend, with the socket looked at before `SELECT 1`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

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
from django_dbconfig.backends.base.asgi import ClosedAtAsgiRequestEnd
from django_dbconfig.backends.base.forks import ForkSafe
from django_dbconfig.backends.base.health import SocketHealthCheck, Verdict, socket_readable
from django_dbconfig.backends.base.network import NamesAliasWhenLost
from django_dbconfig.backends.postgresql import pooler as poolers
from django_dbconfig.backends.postgresql.client import DatabaseClient
from django_dbconfig.backends.postgresql.connect import waiting_for_role

# More reads than this without reaching the end means a chatty, live connection.
_MAX_READS = 3


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
    """
    if conn.broken:
        return Verdict.DEAD
    if not conn.lock.acquire(blocking=False):
        return Verdict.UNSURE
    try:
        return _locked_verdict(conn, readable)
    finally:
        conn.lock.release()


def _locked_verdict(conn: Connection[Any], readable: Callable[[int], bool]) -> Verdict:
    pgconn = conn.pgconn
    state = pgconn.transaction_status
    if state == TransactionStatus.UNKNOWN:
        # libpq's answer for a connection that is closed or broken.
        return Verdict.DEAD
    if state != TransactionStatus.IDLE:
        # In a transaction, or a query or COPY in progress: not for us to judge.
        return Verdict.UNSURE
    for reads in range(_MAX_READS):
        if not readable(pgconn.socket):
            # Nothing was pending (healthy), or messages were read (unsure).
            return Verdict.HEALTHY if reads == 0 else Verdict.UNSURE
        try:
            pgconn.consume_input()
        except OperationalError:
            # libpq read the end of the stream: the server has closed the session.
            # What it read before the end is still buffered: deliver the notifications.
            _deliver_notifications(conn)
            return Verdict.DEAD
        _deliver_notifications(conn)
        if pgconn.status != ConnStatus.OK:
            return Verdict.DEAD
    return Verdict.UNSURE


def _deliver_notifications(conn: Connection[Any]) -> None:
    """Hand the notifications libpq has buffered to psycopg, as a query would."""
    pgconn = conn.pgconn
    while (notify := pgconn.notifies()) is not None:
        if pgconn.notify_handler is not None:
            pgconn.notify_handler(notify)


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


class DatabaseWrapper(
    SocketHealthCheck,
    NamesAliasWhenLost,
    ClosedAtAsgiRequestEnd,
    ForkSafe,
    django_postgresql.DatabaseWrapper,
):
    """Django's PostgreSQL `DatabaseWrapper`, with the health checks looking at the socket
    first (per request, and at each checkout from Django's pool), a password from
    `password_provider` for each new connection, and the session settings sent as SET
    behind a session pooler; dbshell runs with the alias's session settings, TLS and
    read-only mode. A lost connection's error names the alias, an ASGI request
    closes the connections it opened, and a forked child never uses its parent's
    connection or pool. network_timeout needs nothing here: libpq's
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
    django_is_usable = staticmethod(django_postgresql.DatabaseWrapper.is_usable)

    @property
    def pool(self) -> Any:
        """Django's pool (5.1+), with a password asked for at each connection it opens and
        each connection it hands out checked by `check_pooled_connection`.

        Django builds the pool once with fixed keywords. With CONN_HEALTH_CHECKS it
        gives the pool psycopg_pool's check, an empty query on every checkout; that
        is swapped for the socket check. Should psycopg_pool ever keep its check
        elsewhere, the pool keeps Django's.
        """
        pool = getattr(super(), "pool", None)
        if pool is not None:
            credentials.attach_to_pool(pool, self.alias, self.settings_dict)
            if getattr(pool, "_check", None) is type(pool).check_connection:
                pool._check = check_pooled_connection
        return pool

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
        """`idle_verdict` of this connection, with psycopg 3 and no pool."""
        if not is_psycopg3 or self.settings_dict["OPTIONS"].get("pool"):
            # With psycopg2, Django's check; with a pool, Django leaves
            # health to the pool's check.
            return Verdict.UNSURE
        return idle_verdict(self.connection, self.socket_watch.readable)
