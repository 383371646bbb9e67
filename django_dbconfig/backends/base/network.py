"""network_timeout on the driver's socket, and errors that name the alias when a connection is lost."""

from __future__ import annotations

import os
import socket
from typing import Any

from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property

from django_dbconfig.backends.base.settings import keepalive
from django_dbconfig.core.durations import format_duration


def set_tcp_timeouts(fd: int, network_timeout_ms: int) -> None:
    """Set keepalives and TCP_USER_TIMEOUT on a connected TCP socket; leave a Unix socket alone."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        tcp = keepalive(network_timeout_ms)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (
            ("TCP_KEEPIDLE", tcp.idle),
            ("TCP_KEEPINTVL", tcp.interval),
            ("TCP_KEEPCNT", tcp.probes),
            ("TCP_USER_TIMEOUT", tcp.user_timeout_ms),
        ):
            # Linux has them all; other systems some (macOS names the idle time differently).
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    finally:
        sock.close()


class LostConnectionErrors(DatabaseErrorWrapper):
    """Django's error wrapper; when the connection is lost, the error names the alias."""

    wrapper: NamesAliasWhenLost

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_type is None:
            return
        try:
            super().__exit__(exc_type, exc_value, traceback)
        except OperationalError as error:
            if self.wrapper.connection_lost(error.__cause__):
                error.args = _named(error.args, self.wrapper.lost_message())
            raise


def _named(args: tuple[Any, ...], prefix: str) -> tuple[Any, ...]:
    # Keep a driver's error code (MySQLdb's args are (code, message)); name the alias in the message.
    if args and isinstance(args[-1], str):
        return (*args[:-1], f"{prefix}: {args[-1]}")
    return (*args, prefix)


class NamesAliasWhenLost(BaseDatabaseWrapper):
    """An error from a lost connection says which alias lost it, and its network_timeout."""

    def connection_lost(self, error: BaseException | None) -> bool:
        """Whether `error` (the driver's) means the connection to the server is gone."""
        raise NotImplementedError

    def network_timeout_ms(self) -> int | None:
        raise NotImplementedError

    def lost_message(self) -> str:
        timeout = self.network_timeout_ms()
        limit = f" (network_timeout is {format_duration(timeout)})" if timeout else ""
        return f'Database "{self.alias}": lost the connection to the server{limit}'

    @cached_property
    def wrap_database_errors(self) -> DatabaseErrorWrapper:
        return LostConnectionErrors(self)


class TcpTimeoutsOnSocket(NamesAliasWhenLost):
    """Set network_timeout's TCP options on each new connection's socket (for drivers without them)."""

    def get_new_connection(self, conn_params: Any) -> Any:
        connection = super().get_new_connection(conn_params)
        timeout = self.network_timeout_ms()
        if timeout:
            set_tcp_timeouts(connection.fileno(), timeout)
        return connection
