"""MySQL and MariaDB (mysqlclient): Django's backend, with the socket looked at before a ping."""

from __future__ import annotations

from typing import Any

from django.db.backends.mysql import base as django_mysql

from ..asgi import ClosedAtAsgiRequestEnd
from ..health import SocketHealthCheck, Verdict
from ..network import NamesAliasWhenLost, set_tcp_timeouts

# Client errors of a connection that is gone: server gone away, lost during a query.
_LOST = frozenset({2006, 2013, 2055})


class DatabaseWrapper(
    SocketHealthCheck, NamesAliasWhenLost, ClosedAtAsgiRequestEnd, django_mysql.DatabaseWrapper
):
    """Django's MySQL `DatabaseWrapper`, with a socket health check, network_timeout on
    the socket, errors naming the alias on a lost connection, and ASGI requests
    closing their connections."""

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        timeout = self.network_timeout_ms()
        if timeout:
            set_tcp_timeouts(connection.fileno(), timeout)
        return connection

    def network_timeout_ms(self) -> int | None:
        seconds = self.settings_dict.get("NETWORK_TIMEOUT")
        return round(seconds * 1000) if seconds else None

    def connection_lost(self, error: BaseException | None) -> bool:
        if not isinstance(error, self.Database.OperationalError) or not error.args:
            return False
        return error.args[0] in _LOST

    def socket_verdict(self) -> Verdict:
        """Healthy when idle with nothing to read; dead when anything is waiting.

        The MySQL protocol is strictly request and response: an idle session
        outside a transaction receives bytes only when the server ends it (an
        error packet before closing on KILL, wait_timeout or shutdown, a TLS
        close_notify, or the close itself). So a readable socket is a closed
        session. Were that ever wrong, the cost is one reconnect, never a failed
        request.
        """
        conn = self.connection
        if not conn.open:
            return Verdict.DEAD
        if self.in_atomic_block or not self.get_autocommit():
            return Verdict.UNSURE
        fd = conn.fileno()
        if fd < 0:
            return Verdict.UNSURE
        return Verdict.DEAD if self.socket_watch.readable(fd) else Verdict.HEALTHY
