"""MySQL and MariaDB (mysqlclient): Django's backend, with the socket looked at before a ping."""

from __future__ import annotations

from django.db.backends.mysql import base as django_mysql

from ..health import SocketHealthCheck, Verdict


class DatabaseWrapper(SocketHealthCheck, django_mysql.DatabaseWrapper):
    """Django's MySQL `DatabaseWrapper`; only the per-request health check differs."""

    django_is_usable = staticmethod(django_mysql.DatabaseWrapper.is_usable)

    def socket_verdict(self) -> Verdict:
        """Healthy when idle with nothing to read; dead when anything is waiting.

        The MySQL protocol is strictly request and response: an idle session
        outside a transaction receives bytes only when the server ends it (an
        error packet before closing on KILL, wait_timeout or shutdown, a TLS
        close_notify, or the close itself). So a readable socket is a closed
        session. Were that ever wrong, the cost is one reconnect, never a failed
        request.

        A connection shared between threads gets Django's check: another thread
        may be reading a reply from the socket right now, which is not a close.
        """
        conn = self.connection
        if not conn.open:
            return Verdict.DEAD
        if self.in_atomic_block or not self.get_autocommit() or self.allow_thread_sharing:
            return Verdict.UNSURE
        fd = conn.fileno()
        if fd < 0:
            return Verdict.UNSURE
        return Verdict.DEAD if self.socket_watch.readable(fd) else Verdict.HEALTHY
