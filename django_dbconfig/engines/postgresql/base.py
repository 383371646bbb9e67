"""PostgreSQL (psycopg 3): Django's backend, with the socket looked at before `SELECT 1`."""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base as django_postgresql
from django.db.backends.postgresql.psycopg_any import is_psycopg3

if is_psycopg3:
    from psycopg import OperationalError
    from psycopg.pq import ConnStatus, TransactionStatus

from ..asgi import ClosedAtAsgiRequestEnd
from ..health import SocketHealthCheck, Verdict
from ..network import NamesAliasWhenLost

# More reads than this without reaching the end means a chatty, live connection.
_MAX_READS = 3


class DatabaseWrapper(
    SocketHealthCheck, NamesAliasWhenLost, ClosedAtAsgiRequestEnd, django_postgresql.DatabaseWrapper
):
    """Django's PostgreSQL `DatabaseWrapper`, with a socket health check, errors naming
    the alias on a lost connection, and ASGI requests closing their connections.
    network_timeout needs nothing here: libpq's keepalive options are in OPTIONS."""

    def network_timeout_ms(self) -> int | None:
        value: Any = self.settings_dict["OPTIONS"].get("tcp_user_timeout")
        return int(value) if value else None

    def connection_lost(self, error: BaseException | None) -> bool:
        connection = self.connection
        if error is None or connection is None:
            return False
        # psycopg 3 marks the connection broken; psycopg2 closes it.
        return bool(getattr(connection, "broken", False) or connection.closed)

    def socket_verdict(self) -> Verdict:
        """Healthy when idle with nothing to read; dead when the server closed the socket.

        PostgreSQL may talk on an idle session without closing it: NOTIFY to a
        LISTEN-ing session, NOTICE and ParameterStatus messages. So a readable
        socket is not a verdict by itself. libpq reads what is there
        (`consume_input`, which also handles TLS records); reaching the end of
        the stream is a close, and anything else leaves the messages buffered for
        psycopg and falls back to Django's `SELECT 1`, which delivers them as usual.
        """
        if not is_psycopg3 or getattr(self, "pool", None):
            # With psycopg2, Django's check; with a pool, Django leaves
            # health to the pool, and so do we.
            return Verdict.UNSURE
        conn = self.connection
        if conn.broken:
            return Verdict.DEAD
        pgconn = conn.pgconn
        state = pgconn.transaction_status
        if state == TransactionStatus.UNKNOWN:
            # libpq's answer for a connection that is closed or broken.
            return Verdict.DEAD
        if state != TransactionStatus.IDLE:
            # In a transaction, or a query or COPY in progress: not for us to judge.
            return Verdict.UNSURE
        for reads in range(_MAX_READS):
            if not self.socket_watch.readable(pgconn.socket):
                # Nothing was pending (healthy), or messages are now buffered (unsure).
                return Verdict.HEALTHY if reads == 0 else Verdict.UNSURE
            try:
                pgconn.consume_input()
            except OperationalError:
                # libpq read the end of the stream: the server has closed the session.
                return Verdict.DEAD
            if pgconn.status != ConnStatus.OK:
                return Verdict.DEAD
        return Verdict.UNSURE
