"""The PostgreSQL engine's connection pools: psycopg_pool's, one per alias, kept where Django keeps its own.

Imported only when a connection is pooled (psycopg_pool is optional). Pools live in
Django's `DatabaseWrapper._connection_pools`, so Django's `close_pool()` and every
hook that visits that dict (removing a runtime alias, a fork) sees them.

A pool whose server is down does not hold requests for its whole timeout: a
request waiting for a connection fails as soon as a connection attempt has failed
while the pool holds no connection at all, with an error naming the alias, and the
pool is dropped, so the next request connects at once instead of waiting for the
pool's next retry (psycopg_pool backs off 1, 2, 4... seconds).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.db.backends.postgresql import base as django_postgresql
from psycopg import Connection, OperationalError
from psycopg_pool import ConnectionPool, PoolTimeout

from django_dbconfig.backends.base.probe import scrub
from django_dbconfig.backends.postgresql.connect import waiting_for_role

logger = logging.getLogger(__name__)

# How often a request waiting for a connection looks whether the server is failing.
_WAIT_SLICE = 0.1

# Django 5.1+'s dict of pools by alias (the stubs do not know it yet).
_pools: dict[str, Any] = getattr(django_postgresql.DatabaseWrapper, "_connection_pools")  # noqa: B009


class AliasPool(ConnectionPool):
    """psycopg_pool's pool for one alias: a request fails when the server does, naming the alias."""

    def __init__(self, *, alias: str, **kwargs: Any) -> None:
        pool = self
        secret = str((kwargs.get("kwargs") or {}).get("password") or "")

        base: type[Connection[Any]] = kwargs.pop("connection_class", None) or Connection

        class RecordsFailures(base):  # type: ignore[valid-type,misc]
            """psycopg's connection, remembering in the pool why the last connect failed."""

            @classmethod
            def connect(cls, *args: Any, **options: Any) -> Any:
                try:
                    # While the servers change role (a switchover), tried again within
                    # connect_timeout, as the engine's own connections are; a refused or
                    # unreachable server still fails at once, and the pool with it.
                    return waiting_for_role(
                        lambda: super(RecordsFailures, cls).connect(*args, **options),
                        options,
                        alias=alias,
                        retry_on=OperationalError,
                    )
                except Exception as exc:
                    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    with pool._count_lock:
                        pool.failures += 1
                        pool.last_failure = scrub(first_line, [secret])
                    raise

        self.alias = alias
        # Failed connection attempts so far, and why the last one failed. Counted here
        # rather than read from get_stats(), which builds a dict under the pool's lock:
        # getconn() looks at the count at every checkout. Set before the pool may connect.
        self.failures = 0
        self.last_failure = ""
        self._lent = 0
        self._count_lock = threading.Lock()
        super().__init__(name=alias, connection_class=RecordsFailures, **kwargs)

    def getconn(self, timeout: float | None = None) -> Any:
        """A connection within `timeout` (the pool's), or an error once the server is seen failing."""
        total = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + total
        errors = self.failures
        while True:
            try:
                connection = super().getconn(max(0.001, min(_WAIT_SLICE, deadline - time.monotonic())))
            except PoolTimeout:
                failed = self.failures - errors
                if failed and self.holds_nothing():
                    forget(self)
                    raise OperationalError(
                        f'Alias "{self.alias}": could not connect to the server ({failed} attempt'
                        f"{'s' if failed != 1 else ''} failed, the pool holds no connection; the last: "
                        f"{self.last_failure}). The next request connects anew."
                    ) from None
                if time.monotonic() >= deadline:
                    raise PoolTimeout(
                        f'Alias "{self.alias}": no connection from its pool within {total:.1f} s '
                        f"(all {self.max_size} in use). Raise its pool's max_size or timeout."
                    ) from None
                continue
            with self._count_lock:
                self._lent += 1
            return connection

    def putconn(self, conn: Any) -> None:
        with self._count_lock:
            self._lent = max(0, self._lent - 1)
        super().putconn(conn)

    def holds_nothing(self) -> bool:
        """No connection lent out and none idle in the pool."""
        return self._lent == 0 and self.get_stats().get("pool_available", 0) == 0


def pool_for(
    alias: str,
    keywords: Mapping[str, Any],
    *,
    connect_kwargs: Callable[[], dict[str, Any]],
    configure: Callable[[Any], Any],
    check: Callable[[Any], None] | None,
) -> Any:
    """The alias's pool, made (not opened) on first use, as Django makes its own."""
    pool = _pools.get(alias)
    if pool is None:
        kwargs = connect_kwargs()
        # Django sets autocommit itself when it takes the connection.
        kwargs["autocommit"] = True
        made = AliasPool(alias=alias, kwargs=kwargs, open=False, configure=configure, check=check, **keywords)
        # Two threads may make one at once: the first stored wins, as in Django.
        pool = _pools.setdefault(alias, made)
    return pool


def forget(pool: AliasPool) -> None:
    """Drop `pool` from the alias's place and close it without holding up the caller."""
    if _pools.get(pool.alias) is pool:
        del _pools[pool.alias]
    threading.Thread(target=_close, args=(pool,), name=f"close pool {pool.alias}", daemon=True).start()


def _close(pool: Any, timeout: float = 5.0) -> None:
    try:
        pool.close(timeout=timeout)
    except Exception:
        logger.warning("closing the connection pool of %r failed", pool.name, exc_info=True)


def _close_all_at_exit() -> None:
    for pool in list(_pools.values()):
        _close(pool, timeout=1.0)


atexit.register(_close_all_at_exit)
# A forked child: backends/base/forks.py forgets (never closes) Django's pools, where these live.
