"""MySQL and MariaDB: session settings go in `init_command`, TLS in `ssl_mode` and `ssl`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..types import DatabaseSettings
from .base import SERVER_KEYS, Backend, RenderContext, resolve_path, whole_seconds

# mysqlclient's ssl_mode for each sslmode. Each is at least as strict as asked:
# with MariaDB Connector/C, VERIFY_CA also checks the host name.
SSL_MODES = {
    "disable": "DISABLED",
    "allow": "PREFERRED",
    "prefer": "PREFERRED",
    "require": "REQUIRED",
    "verify-ca": "VERIFY_CA",
    "verify-full": "VERIFY_IDENTITY",
}
# The sslmode each ssl_mode stands for, for URLs and for reading settings back.
# PREFERRED is both allow and prefer; the later, prefer, wins.
SSLMODE_OF = {ssl_mode: sslmode for sslmode, ssl_mode in SSL_MODES.items()}
TLS_MODES = ("require", "verify-ca", "verify-full")
# What sql_mode is set to, failing the connect, when TLS was asked for and the
# session is not encrypted. mysqlclient built on MariaDB Connector/C 3.3
# connects in plain text despite ssl_mode=REQUIRED; this guard runs on the
# server, inside the connect, whatever the driver did.
TLS_GUARD = "DBCONFIG_TLS_REQUIRED_BUT_SESSION_NOT_ENCRYPTED"
_NO_SEARCH_PATH = "MySQL and MariaDB have no schema search path: a database is a schema. Set name instead."
_POSTGRES_ONLY = "it is a PostgreSQL setting with no MySQL/MariaDB equivalent."


class MySQL(Backend):
    name = "mysql"
    display = "MySQL"
    engine = "django_dbconfig.engines.mysql"
    keys = SERVER_KEYS
    reasons = {
        "search_path": _NO_SEARCH_PATH,
        "pool": "Django's connection pool exists for PostgreSQL only; use conn_max_age.",
        "idle_in_transaction_session_timeout": _POSTGRES_ONLY,
        "application_name": _POSTGRES_ONLY,
    }
    defaults = {
        "port": 3306,
        "conn_max_age": 60,
        "conn_health_checks": True,
        "connect_timeout": 5000,
        "network_timeout": 30_000,
    }
    read_only_variable = "transaction_read_only"
    # Where the session's status variables can be read in an expression.
    session_status_table = "performance_schema.session_status"

    def statement_timeout(self, ms: int) -> str:
        return f"max_execution_time={ms}"

    def tls_guard(self) -> str:
        """An assignment that fails unless this session is on TLS (and if its status is unreadable)."""
        cipher = (
            f"(SELECT VARIABLE_VALUE FROM {self.session_status_table} WHERE VARIABLE_NAME = 'Ssl_cipher')"
        )
        return f"sql_mode = IF(COALESCE({cipher}, '') = '', '{TLS_GUARD}', @@SESSION.sql_mode)"

    def session_assignments(self, values: Mapping[str, Any]) -> list[str]:
        assignments = []
        if values.get("sslmode") in TLS_MODES:
            assignments.append(self.tls_guard())
        if "statement_timeout" in values:
            assignments.append(self.statement_timeout(values["statement_timeout"]))
        if "lock_timeout" in values:
            seconds = whole_seconds(values["lock_timeout"])
            assignments.append(f"innodb_lock_wait_timeout={seconds}")
            assignments.append(f"lock_wait_timeout={seconds}")
        if values.get("read_only"):
            assignments.append(f"{self.read_only_variable}=1")
        return assignments

    def render(self, values: Mapping[str, Any], ctx: RenderContext) -> DatabaseSettings:
        settings = super().render(values, ctx)
        if values.get("network_timeout") and values.get("engine", self.engine) == self.engine:
            # mysqlclient has no keepalive settings: the project's engine sets the TCP
            # options on the connection's socket. Not in OPTIONS, which go to
            # MySQLdb.connect(): Django's own engine, swapped in, ignores this key.
            settings["NETWORK_TIMEOUT"] = values["network_timeout"] / 1000
        return settings

    def render_options(self, values: Mapping[str, Any], ctx: RenderContext) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if "connect_timeout" in values:
            options["connect_timeout"] = whole_seconds(values["connect_timeout"])
        if "sslmode" in values:
            options["ssl_mode"] = SSL_MODES[values["sslmode"]]
        ssl = {
            part: resolve_path(values[key], ctx.base_dir)
            for key, part in (("sslrootcert", "ca"), ("sslcert", "cert"), ("sslkey", "key"))
            if key in values
        }
        if ssl:
            options["ssl"] = ssl
        assignments = self.session_assignments(values)
        if assignments:
            options["init_command"] = "SET SESSION " + ", ".join(assignments)
        return options


class MariaDB(MySQL):
    name = "mariadb"
    display = "MariaDB"
    read_only_variable = "tx_read_only"
    session_status_table = "information_schema.SESSION_STATUS"

    def statement_timeout(self, ms: int) -> str:
        # MariaDB counts seconds, with fractions.
        return f"max_statement_time={ms / 1000:g}"
