"""The connection objects of runtime aliases, in every thread, and how to close them from any thread.

Django keeps one connection object per alias and thread (an asgiref `Local` over
`threading.local`), so a thread sees only its own. Removing a runtime alias must end
the server session every thread opened, at once, and leave nothing behind in any
thread. So, when the first runtime alias is added, `django.db.connections` gets a
subclass of its own class that keeps the objects of runtime aliases apart from
Django's: in one small dict per thread (`_Slots`), which the process can reach
from any thread through a weak set. Removing an alias pops its object from every
thread's dict (the removing thread ends their server sessions: see
close_everywhere), so a thread that stays alive keeps nothing of a removed alias.
The aliases of DATABASES stay in Django's own storage, untouched.

`connections.settings` is updated in place under a lock (never copied per call: adding
and removing cost the same at the 10,000th alias as at the first); iterating
`connections` iterates a snapshot, so a thread may add while another iterates.
A dict or set keeps the table of the most keys it ever held; once most runtime aliases
are gone (compact()), the process-wide ones are rebuilt at their present size, so what
10,000 removed aliases needed is given back.

An object held across the removal and used without going through `connections`
cannot open a session: it is marked removed, and the `connection_created` receiver
closes it and raises.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created

from django_dbconfig.core.errors import DbConfigError

logger = logging.getLogger(__name__)

_lock = threading.Lock()
# The runtime aliases registered now: only these are kept apart and checked on access.
_names: set[str] = set()
# alias -> every connection object made for it, in any thread (a finished thread's too,
# until the garbage collector takes it); emptied for an alias when it is removed.
_made: dict[str, weakref.WeakSet[Any]] = {}
_installed = False
# Seconds a cancel request may take before the session is simply hung up on.
CANCEL_TIMEOUT = 5.0
# Set on a connection object taken away by remove_database(): it may not connect again.
REMOVED = "_dbconfig_removed"


class _Slots:
    """One thread's connection objects of runtime aliases, held weakly by _every_thread."""

    __slots__ = ("__weakref__", "made")

    def __init__(self) -> None:
        self.made: dict[str, Any] = {}


_local = threading.local()
# Every live thread's _Slots; a finished thread's goes with its thread-local storage.
_every_thread: weakref.WeakSet[_Slots] = weakref.WeakSet()


def _slots() -> _Slots:
    """This thread's _Slots, made on first use."""
    try:
        slots: _Slots = _local.slots
    except AttributeError:
        slots = _local.slots = _Slots()
        with _lock:
            _every_thread.add(slots)
    return slots


def install() -> None:
    """Give django.db.connections the tracking subclass of its class (once).

    Its settings become a dict of their own (a copy of DATABASES, made once), so runtime
    aliases never appear in settings.DATABASES.
    """
    global _installed  # noqa: PLW0603 - one switch for the process

    with _lock:
        if _installed:
            return
        base = type(connections)
        connections.__dict__["settings"] = dict(connections.settings)
        connections.__class__ = type(f"Tracking{base.__name__}", (_TrackingMixin, base), {})
        connection_created.connect(
            _refuse_stale, dispatch_uid="django_dbconfig.runtime.tracking.refuse_stale"
        )
        _installed = True


def watch(alias: str) -> None:
    """Keep the connection objects of `alias` apart from now on (call under the caller's lock)."""
    with _lock:
        _names.add(alias)


def take(alias: str) -> list[Any]:
    """Forget `alias`, and take its connection objects away from every thread; marked removed.

    Call after the alias left connections.settings: a thread that makes an object
    meanwhile finds the alias gone and drops that object itself (_TrackingMixin).
    """
    with _lock:
        _names.discard(alias)
        threads = list(_every_thread)
        made = list(_made.pop(alias, ()))
    for slots in threads:
        found = slots.made.pop(alias, None)
        if found is not None and found not in made:
            made.append(found)  # put there with connections[alias] = ...
    for connection in made:
        setattr(connection, REMOVED, True)
    return made


def kept() -> dict[str, int]:
    """How many runtime aliases and thread dicts are tracked, and the objects they hold (for tests)."""
    with _lock:
        threads = list(_every_thread)
    return {
        "aliases": len(_names | set(_made)),
        "threads": len(threads),
        "objects": sum(len(slots.made) for slots in threads),
    }


def is_stale(connection: Any) -> bool:
    """A connection object that remove_database() took away (it may not connect again)."""
    return bool(getattr(connection, REMOVED, False))


class _TrackingMixin:
    """Mixed before Django's ConnectionHandler on django.db.connections."""

    settings: dict[str, Any]
    _connections: Any
    exception_class: type[Exception]

    def __getitem__(self, alias: str) -> Any:
        if alias not in _names:
            return super().__getitem__(alias)  # type: ignore[misc]
        slots = _slots().made
        wanted = self.settings.get(alias)
        connection = slots.get(alias)
        if connection is not None:
            if connection.settings_dict is wanted:
                return connection
            # Made before its alias was removed (and perhaps added again): already closed.
            slots.pop(alias, None)
            close_here(connection)
        if wanted is None:
            raise self.exception_class(f"The connection '{alias}' doesn't exist.")
        connection = self.create_connection(alias)
        slots[alias] = connection
        if self.settings.get(alias) is not wanted:
            # Removed meanwhile, perhaps after take() visited this thread: drop it here.
            slots.pop(alias, None)
            raise self.exception_class(f"The connection '{alias}' doesn't exist.")
        return connection

    def create_connection(self, alias: str) -> Any:
        connection = super().create_connection(alias)  # type: ignore[misc]
        if alias in _names:
            with _lock:
                if alias in _names:  # not removed meanwhile: take() has emptied its entry
                    _made.setdefault(alias, weakref.WeakSet()).add(connection)
        return connection

    def __setitem__(self, alias: str, value: Any) -> None:
        if alias in _names:
            _slots().made[alias] = value
        else:
            super().__setitem__(alias, value)  # type: ignore[misc]

    def __delitem__(self, alias: str) -> None:
        if alias in _names:
            try:
                del _slots().made[alias]
            except KeyError:
                raise AttributeError(alias) from None
        else:
            super().__delitem__(alias)  # type: ignore[misc]

    def __iter__(self) -> Iterator[str]:
        # A snapshot: another thread may add or remove a runtime alias meanwhile.
        return iter(list(self.settings))

    def __contains__(self, alias: object) -> bool:
        return alias in self.settings

    def all(self, initialized_only: bool = False) -> list[Any]:
        """As Django's, but `initialized_only` visits only this thread's objects.

        close_old_connections() calls it at every request's start and end: with
        10,000 runtime aliases it must not look at each of them.
        """
        if not initialized_only:
            return [self[alias] for alias in self]
        static = [self[alias] for alias in _initialized(self._connections) if alias in self.settings]
        runtime = [self[alias] for alias in list(_slots().made) if alias in self.settings]
        return static + runtime


def _initialized(local: Any) -> list[str]:
    """The aliases of DATABASES with a connection object in this thread."""
    storage = getattr(local, "_storage", None)
    if isinstance(storage, threading.local):  # asgiref's Local(thread_critical=True)
        return list(vars(storage))
    return [alias for alias in list(connections.settings) if hasattr(local, alias)]


def _refuse_stale(sender: Any, connection: Any, **kwargs: Any) -> None:

    if not is_stale(connection):
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


def compact() -> None:
    """Rebuild the process-wide dicts and sets that runtime aliases grew, at their present size.

    Python never shrinks a dict or set when keys are deleted: after 10,000 aliases came and
    went, each would keep a table for 10,000. Each is replaced by a copy in one assignment,
    so a thread reading it meanwhile sees the old one or the new one, whole. Call under the
    caller's lock (no alias added or removed meanwhile), seldom: it costs a copy of each.
    The threads' own dicts (_Slots) stay: their threads write them without a lock.
    """
    global _names, _made  # noqa: PLW0603 - replaced whole, read without the lock

    connections.__dict__["settings"] = dict(connections.settings)
    with _lock:
        _names = set(_names)
        _made = dict(_made)
    module = sys.modules.get("django.db.backends.base.base")
    checked = getattr(module, "RAN_DB_VERSION_CHECK", None)
    if isinstance(checked, set):
        # Django reads it as a module global at each connection: the copy is what it sees next.
        module.RAN_DB_VERSION_CHECK = set(checked)  # type: ignore[union-attr]


def give_back_memory() -> None:
    """Hand the C allocator's free memory back to the system (glibc's malloc_trim; elsewhere nothing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    # Only once a drain of aliases asks for it: not on the path of every settings.py.
    import ctypes

    try:
        # The process's own symbols, where the C library's are (no search for its file).
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def forget_alias(alias: str) -> None:
    """Drop what Django keeps per alias name in the process: the set of aliases whose server
    version was checked (Django 4.1+), which would otherwise grow by one name per alias."""
    checked = getattr(sys.modules.get("django.db.backends.base.base"), "RAN_DB_VERSION_CHECK", None)
    if isinstance(checked, set):
        checked.discard(alias)


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
