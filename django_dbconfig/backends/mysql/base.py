"""MySQL and MariaDB (mysqlclient): Django's backend, with the socket looked at before a ping."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_dbconfig.backends.mysql.settings import (
    TLS_GUARD,
    UNKNOWN_SYSTEM_VARIABLE,
    MySQL,
    for_other_server,
    is_mariadb_flavoured,
)

try:
    import MySQLdb
except ImportError as exc:
    raise ImproperlyConfigured(
        f"The MySQL driver (MySQLdb) is not installed. Install it: {MySQL.install}"
    ) from exc

from django.db.backends.mysql import base as django_mysql

from django_dbconfig.backends.base import credentials
from django_dbconfig.backends.base.asgi import ClosedAtAsgiRequestEnd
from django_dbconfig.backends.base.demotion import DropsDemotedWriter
from django_dbconfig.backends.base.forks import ForkSafe
from django_dbconfig.backends.base.health import SocketHealthCheck, Verdict
from django_dbconfig.backends.base.network import TcpTimeoutsOnSocket
from django_dbconfig.backends.mysql.client import DatabaseClient

logger = logging.getLogger(__name__)

# Server (host, port, socket) -> True when it is MariaDB: learnt when an init_command
# written for the other server was refused, so that later connections go straight.
_mariadb_servers: dict[tuple[Any, ...], bool] = {}
# Client errors of a connection that is gone: server gone away, lost during a query.
_LOST = frozenset({2006, 2013, 2055})


class DatabaseWrapper(
    SocketHealthCheck,
    DropsDemotedWriter,
    TcpTimeoutsOnSocket,
    ClosedAtAsgiRequestEnd,
    ForkSafe,
    django_mysql.DatabaseWrapper,
):
    """Django's MySQL `DatabaseWrapper`; the per-request health check differs, the session
    settings follow the server (MariaDB or MySQL) whatever the backend said, and a
    `password_provider` gives the password of each new connection. network_timeout is
    set on the socket, a lost connection's error names the alias, a write alias drops a
    connection whose server turned read_only on, an ASGI request closes the connections it
    opened, and a forked child never uses its parent's connection."""

    def network_timeout_ms(self) -> int | None:
        seconds = (self.settings_dict.get("DBCONFIG") or {}).get("network_timeout")
        return round(seconds * 1000) if seconds else None

    def connection_lost(self, error: BaseException | None) -> bool:
        if not isinstance(error, MySQLdb.OperationalError) or not error.args:
            return False
        return error.args[0] in _LOST

    def get_new_connection(self, conn_params: Any) -> Any:
        conn_params = credentials.with_password(conn_params, self.alias, self.settings_dict)
        command = str((conn_params or {}).get("init_command") or "")
        if not command:
            return super().get_new_connection(conn_params)
        server = tuple(conn_params.get(key) for key in ("host", "port", "unix_socket"))
        known = _mariadb_servers.get(server)
        if known is not None and known != is_mariadb_flavoured(command):
            command = for_other_server(command)
        try:
            return super().get_new_connection({**conn_params, "init_command": command})
        except MySQLdb.OperationalError as exc:
            code = exc.args[0] if exc.args else None
            other = for_other_server(command)
            # 1193: a variable of the other server. The TLS guard also fails where the status
            # table it reads is empty (MariaDB's performance_schema is off by default).
            if other == command or not (code == UNKNOWN_SYSTEM_VARIABLE or TLS_GUARD in str(exc)):
                raise
            try:
                connection = super().get_new_connection({**conn_params, "init_command": other})
            except MySQLdb.Error:
                raise exc from None
            _mariadb_servers[server] = is_mariadb_flavoured(other)
            logger.warning(
                'Database "%s": the server is %s, but the backend is "%s": set backend "%s" '
                "(or a %s:// URL) for this alias.",
                self.alias,
                *(
                    ("MariaDB", "mysql", "mariadb", "mariadb")
                    if _mariadb_servers[server]
                    else ("MySQL", "mariadb", "mysql", "mysql")
                ),
            )
            return connection

    client_class = DatabaseClient
    family = MySQL()

    django_is_usable = staticmethod(django_mysql.DatabaseWrapper.is_usable)

    def server_demoted(self, error: BaseException | None) -> str | None:
        # Only the server's read_only: 1792 is this session's own read-only transaction.
        if self.family.server_read_only(error):
            return "it runs with read_only on"
        return None

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
