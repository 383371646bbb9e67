"""The connection objects of runtime aliases, in every thread, and how to close them from any thread.

Django keeps one connection object per alias and thread (an asgiref `Local`), so a
thread sees only its own, and a finished thread's objects live on until the cyclic
garbage collector finds them. Removing a runtime alias must end the server session
every thread opened, at once. So, when the first runtime alias is added,
`django.db.connections` gets a subclass of its own class that:

- records, weakly, each connection object it makes for a runtime alias;
- on a thread's next `connections[alias]`, replaces an object made before its alias
  was removed (and perhaps added again with other settings) by a fresh one, or
  raises ConnectionDoesNotExist when the alias is gone.

An object held across the removal and used without going through `connections`
cannot open a session: the `connection_created` receiver closes it and raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created

from django_dbconfig.core.errors import DbConfigError

logger = logging.getLogger(__name__)

_lock = threading.Lock()
# Every alias ever added at runtime: only these are checked on access.
_names: set[str] = set()
# alias -> the connection objects made for it, in any thread; guarded by _lock.
_made: dict[str, weakref.WeakSet[Any]] = {}
_installed = False
# Seconds a cancel request may take before the session is simply hung up on.
CANCEL_TIMEOUT = 5.0


def install() -> None:
    """Give django.db.connections the tracking subclass of its class (once)."""
    global _installed  # noqa: PLW0603 - one switch for the process

    with _lock:
        if _installed:
            return
        base = type(connections)
        connections.__class__ = type(f"Tracking{base.__name__}", (_TrackingMixin, base), {})
        connection_created.connect(
            _refuse_stale, dispatch_uid="django_dbconfig.runtime.tracking.refuse_stale"
        )
        _installed = True


def watch(alias: str) -> None:
    """Track the connection objects of `alias` from now on."""
    with _lock:
        _names.add(alias)


def take(alias: str, *, current: Iterable[str]) -> list[Any]:
    """The live connection objects made for `alias`, in every thread.

    Names whose objects are all gone (collected), and that `current` no longer
    lists, are forgotten here: a process making a fresh alias per request does
    not keep one name per request.
    """
    with _lock:
        made = list(_made.get(alias, ()))
        registered = set(current)
        for name in [name for name in _names if name not in registered and name != alias]:
            if not _made.get(name):
                _names.discard(name)
                _made.pop(name, None)
        return made


def is_stale(connection: Any, settings: Mapping[str, Any]) -> bool:
    """Made by django.db.connections for a runtime alias that was removed since (and perhaps added again).

    A wrapper made apart from django.db.connections with a copy of the settings (the
    replica lag measurer's own connection) is not one of those.
    """
    if connection.alias not in _names or connection.settings_dict is settings.get(connection.alias):
        return False
    with _lock:
        made = _made.get(connection.alias)
        return made is not None and connection in made


class _TrackingMixin:
    """Mixed before Django's ConnectionHandler on django.db.connections."""

    settings: dict[str, Any]
    _connections: Any

    def __getitem__(self, alias: str) -> Any:
        connection = super().__getitem__(alias)  # type: ignore[misc]
        if alias in _names and connection.settings_dict is not self.settings.get(alias):
            # Made in this thread before the alias was removed: its session is already closed.
            close_here(connection)
            with contextlib.suppress(AttributeError):
                delattr(self._connections, alias)
            connection = super().__getitem__(alias)  # type: ignore[misc]
        return connection

    def create_connection(self, alias: str) -> Any:
        connection = super().create_connection(alias)  # type: ignore[misc]
        if alias in _names:
            with _lock:
                _made.setdefault(alias, weakref.WeakSet()).add(connection)
        return connection


def _refuse_stale(sender: Any, connection: Any, **kwargs: Any) -> None:

    if not is_stale(connection, connections.settings):
        return
    close_here(connection)
    raise DbConfigError(
        f'The runtime database "{connection.alias}" was removed: this connection object was made '
        f'before remove_database("{connection.alias}"). Get a fresh one with '
        f'connections["{connection.alias}"] (or .using("{connection.alias}")) after adding it again.'
    )


def close_here(connection: Any) -> None:
    """Close a connection object of this thread with Django's own close()."""
    try:
        connection.close()
    except Exception:
        # In an event loop thread (async-unsafe), or the session is already gone.
        logger.debug("closing %r in its thread failed; hanging up", connection.alias, exc_info=True)
        hang_up(connection.connection)


def close_everywhere(connections: list[Any]) -> None:
    """End the server session of each connection object, whichever thread owns it."""
    me = threading.get_ident()
    for connection in connections:
        if connection._thread_ident == me:
            close_here(connection)
        else:
            # Another thread's object: Django's close() there is not ours to call
            # (validate_thread_sharing); the driver connection is closed under it.
            hang_up(connection.connection)


def hang_up(raw: Any) -> None:
    """End the server session of a driver connection that another thread may be using.

    psycopg 3 holds `connection.lock` for every operation: when it is free the
    connection is idle and is closed properly (the server ends the session at
    once). When it is busy, and for drivers without such a lock (mysqlclient,
    psycopg2), its query is cancelled where the driver can (psycopg), and the
    socket is shut down under the driver: the server sees the end of the stream
    and ends the session, and the owner's next call fails cleanly instead of
    racing a close. A MySQL session busy in a query ends when that query does.
    SQLite has no server session and no socket.
    """
    if raw is None:
        return
    lock = getattr(raw, "lock", None)
    # A pooled connection whose close() returns it to its pool would take the lock again.
    returns = getattr(getattr(raw, "_pool", None), "close_returns", False)
    if lock is not None and not returns and lock.acquire(blocking=False):
        try:
            raw.close()
        except Exception:
            logger.debug("closing an idle driver connection failed", exc_info=True)
        finally:
            lock.release()
        return
    try:
        fd = raw.fileno()
    except Exception:
        return  # closed already, or no socket (SQLite)
    # A server busy in a query reads the socket only when the query ends: cancel it first
    # (psycopg's cancel is made for calling from another thread; mysqlclient has none).
    try:
        if hasattr(raw, "cancel_safe"):  # psycopg 3.2+: bounded, even with the server gone
            raw.cancel_safe(timeout=CANCEL_TIMEOUT)
        elif hasattr(raw, "cancel"):
            raw.cancel()
    except Exception:
        logger.debug("cancelling the query of a busy connection failed", exc_info=True)
    if not isinstance(fd, int) or fd < 0:
        return
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        logger.debug("shutting down a driver socket failed", exc_info=True)


def forget_pool(alias: str, engine: str) -> None:
    """Close and drop the connection pool Django keeps for `alias` (PostgreSQL, Django 5.1+).

    Django keys pools by alias on the backend's DatabaseWrapper class: a name added
    again with other settings would otherwise get the old pool.
    """
    module = sys.modules.get(f"{engine}.base")
    pools = getattr(getattr(module, "DatabaseWrapper", None), "_connection_pools", None)
    if not isinstance(pools, dict):
        return  # the engine was never loaded, or keeps no pools
    pool = pools.pop(alias, None)
    if pool is not None:
        try:
            pool.close()
        except Exception:
            logger.warning("closing the connection pool of %r failed", alias, exc_info=True)


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at the fork; the child's connection objects
    # were dropped by the engines' fork hook (backends/base/forks.py) and are made anew.
    global _lock  # noqa: PLW0603 - the child's own lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
