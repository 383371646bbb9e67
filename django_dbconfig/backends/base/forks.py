"""After `os.fork()`, the child drops the connections and pools it inherited, without closing the parent's.

A forked process (gunicorn `--preload` workers, Celery's prefork pool, multiprocessing)
starts with a copy of its parent's memory: every Django connection object, in every
thread, still holds a driver connection whose socket is the parent's socket. Using
one from the child interleaves two processes' messages in one session. Closing one
from the child is no better: psycopg sends Terminate and mysqlclient COM_QUIT on the
shared socket, and the server ends the parent's session. The garbage collector
would do the same for mysqlclient (its connection's destructor closes it; psycopg's
does not, after a fork) when it frees the wrappers of the threads the fork left behind.

So, in the child only, each inherited driver connection is detached: its socket
descriptor is replaced by `/dev/null` (`dup2`), which ends the child's share of the
socket and sends whatever the driver writes on close nowhere; then the driver
connection is closed, which frees it and its descriptor. The wrapper forgets it and
connects anew on its next query. Django's connection pools (PostgreSQL, Django 5.1+,
kept on the backend's class by alias) are dropped the same way: their idle
connections are detached, and the pool object is kept referenced but never used
(its worker threads did not survive the fork, and its destructor would stop them);
Django makes a new pool on first use. A connection without a socket (SQLite) is left
as it is: it shares no server session, and Django's parallel test runner counts on a
forked worker inheriting its parent's in-memory database.

Which wrappers: every one this project's engines make (registered when made), and
any other engine's once it connects (`connection_created`). The registry's lock is
held across the fork, so no wrapper is made while the parent takes its list, and
the list holds them strongly so none is freed before the child looks at it.

Other modules that own threads or connections (the health probes, the lag
measurers) register their own hooks.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

logger = logging.getLogger(__name__)

__all__ = ["ForkSafe", "detach", "forks_seen"]

_lock = threading.Lock()
_wrappers: weakref.WeakSet[BaseDatabaseWrapper] = weakref.WeakSet()
# Held from just before a fork until just after it, in both processes.
_at_fork: list[BaseDatabaseWrapper] = []
# What a child inherited and must never free: pools, and sockets it could not detach.
_kept: list[Any] = []
_forks = 0  # forks this process has come from (for tests and logs)


def forks_seen() -> int:
    """How many times this process's inherited connections were dropped after a fork."""
    return _forks


def _register(wrapper: BaseDatabaseWrapper) -> None:
    with _lock:
        _wrappers.add(wrapper)


class ForkSafe(BaseDatabaseWrapper):
    """Known to the fork hooks from the moment it is made (mixed into the engines)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _register(self)


def _on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # Engines other than this project's (Django's SQLite, a third party's) are seen here.
    if not isinstance(connection, ForkSafe):
        _register(connection)


def detach(raw: Any) -> bool:
    """Free, in a forked child, a driver connection its parent may still be using, without
    a byte reaching the parent's session. False (and nothing done) when it has no socket."""
    fd = _socket_of(raw)
    if fd is None:
        return False  # no socket (SQLite), or closed already
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd, inheritable=False)
    except OSError:
        # Never close it then, and never let the collector do so.
        logger.warning("could not detach an inherited database socket; leaving it unused", exc_info=True)
        _kept.append(raw)
        return True
    finally:
        os.close(devnull)
    try:
        pgconn = getattr(raw, "pgconn", None)
        if pgconn is not None:
            # psycopg 3: libpq's own close, even for a pooled connection (whose close()
            # could hand it back to its dead pool).
            pgconn.finish()
        else:
            raw.close()
    except Exception:
        logger.debug("closing a detached connection failed", exc_info=True)
    return True


def _socket_of(raw: Any) -> int | None:
    try:
        pgconn = getattr(raw, "pgconn", None)
        fd = pgconn.socket if pgconn is not None else raw.fileno()
    except Exception:
        return None  # closed already, or no socket
    return fd if isinstance(fd, int) and fd >= 0 else None


def _drop(wrapper: BaseDatabaseWrapper) -> None:
    """Make the wrapper connect anew on its next use, as Django's close() would leave it."""
    raw = wrapper.connection
    if raw is None or not detach(raw):
        return
    wrapper.connection = None
    wrapper.run_on_commit = []
    if wrapper.in_atomic_block:
        # As Django's close() inside a block: the transaction is gone, queries fail until the
        # outermost block exits.
        wrapper.closed_in_transaction = True
        wrapper.needs_rollback = True


def _drop_pools() -> None:
    """Forget Django's PostgreSQL pools (5.1+): the next use makes a new one in this process."""
    module = sys.modules.get("django.db.backends.postgresql.base")
    pools = getattr(getattr(module, "DatabaseWrapper", None), "_connection_pools", None)
    if not isinstance(pools, dict):
        return
    for alias, pool in list(pools.items()):
        # psycopg_pool keeps its idle connections in a deque named _pool; it has no public list.
        for raw in list(getattr(pool, "_pool", ())):
            detach(raw)
        _kept.append(pool)
        pools.pop(alias, None)


def _before_fork() -> None:
    _lock.acquire()
    _at_fork[:] = list(_wrappers)


def _after_fork_in_parent() -> None:
    _at_fork.clear()
    _lock.release()


def _after_fork_in_child() -> None:
    global _forks, _lock  # noqa: PLW0603 - the child's own lock and count
    _lock = threading.Lock()
    _forks += 1
    inherited, _at_fork[:] = list(_at_fork), []
    for wrapper in inherited:
        try:
            _drop(wrapper)
        except Exception:
            logger.warning("dropping an inherited connection of %r failed", wrapper.alias, exc_info=True)
    try:
        _drop_pools()
    except Exception:
        logger.warning("dropping the inherited connection pools failed", exc_info=True)


connection_created.connect(_on_connection_created, dispatch_uid="django_dbconfig.backends.base.forks")
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
