"""MySQL and MariaDB (mysqlclient): Django's backend, with the socket looked at before a ping."""

from __future__ import annotations

from django.db.backends.mysql import base as django_mysql

from ..health import SocketHealthCheck, Verdict
from .client import DatabaseClient


class DatabaseWrapper(SocketHealthCheck, django_mysql.DatabaseWrapper):
    """Django's MySQL `DatabaseWrapper`; the per-request health check and dbshell differ."""

    client_class = DatabaseClient

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
