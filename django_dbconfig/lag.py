"""Replication lag, measured off the request path: which replicas may serve reads now.

A `LagMonitor` runs one daemon thread per replica that has a `max_replica_lag`.
Each thread keeps its own connection to the replica (never one of Django's
per-request connections) and measures the lag at most once a second. A replica
is *fit* while its last measurement succeeded and its lag is within its limit;
it is unfit before its first measurement, while it lags more, when it cannot be
reached, and while a measurement hangs for longer than its connect timeout.
Each change of fitness is passed to a callback (the router re-picks its replicas
there), so the request path reads a ready answer and never waits for a server.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two measurements of one replica
_monitors: weakref.WeakSet[LagMonitor] = weakref.WeakSet()


@dataclass
class _Replica:
    alias: str
    limit_s: float
    fit: bool = False
    lag_s: float | None = None
    measuring_since: float | None = None
    error: str | None = None


class LagMonitor:
    """Measure the lag of each replica in `limits` (alias -> max lag in seconds) in background threads."""

    def __init__(
        self,
        limits: Mapping[str, float],
        *,
        settings: Callable[[str], Mapping[str, Any]],
        on_change: Callable[[str, bool], None],
        interval: float = INTERVAL,
    ) -> None:
        self._replicas = {alias: _Replica(alias, limit) for alias, limit in limits.items()}
        self._settings = settings
        self._on_change = on_change
        self._interval = interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        _monitors.add(self)

    def __repr__(self) -> str:
        return f"LagMonitor({ {a: r.limit_s for a, r in self._replicas.items()}!r})"

    def start(self) -> None:
        """Start the threads (again, after a fork: threads do not survive one)."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._watch, args=(replica,), daemon=True, name=f"dbconfig-lag-{alias}")
            for alias, replica in self._replicas.items()
        ]
        self._threads.append(threading.Thread(target=self._guard, daemon=True, name="dbconfig-lag-guard"))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop measuring; threads stuck on a hung server are left to die with the process."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def lag(self, alias: str) -> float | None:
        """The last lag measured (seconds), or None: not measured yet, unreachable, or not monitored."""
        replica = self._replicas.get(alias)
        return None if replica is None else replica.lag_s

    def fit(self, alias: str) -> bool:
        """Whether the replica may serve reads now (always true for a replica without a limit)."""
        replica = self._replicas.get(alias)
        return replica is None or replica.fit

    # -- threads

    def _watch(self, replica: _Replica) -> None:
        connection = None
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                replica.measuring_since = started
                try:
                    if connection is None:
                        connection = self._connect(replica.alias)
                    lag = self._measure(connection)
                except Exception as exc:
                    replica.error = f"{type(exc).__name__}"
                    replica.lag_s = None
                    self._set(replica, False, why=f"unreachable ({replica.error})")
                    _close(connection)
                    connection = None
                else:
                    replica.error = None
                    replica.lag_s = lag
                    if lag is None:
                        self._set(replica, False, why="lag unknown (replication stopped?)")
                    else:
                        self._set(replica, lag <= replica.limit_s, why=f"lag {lag:.3f} s")
                finally:
                    replica.measuring_since = None
                self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))
        finally:
            _close(connection)

    def _guard(self) -> None:
        """A measurement hanging longer than its connect timeout makes the replica unfit."""
        while not self._stop.wait(self._interval / 2):
            now = time.monotonic()
            for replica in self._replicas.values():
                since = replica.measuring_since
                if since is not None and now - since > self._timeout(replica.alias):
                    self._set(replica, False, why="no answer")

    def _timeout(self, alias: str) -> float:
        options = self._settings(alias).get("OPTIONS") or {}
        try:
            return max(float(options.get("connect_timeout") or 5), 1.0) + self._interval
        except (TypeError, ValueError):
            return 5.0 + self._interval

    def _set(self, replica: _Replica, fit: bool, *, why: str) -> None:
        with self._lock:
            changed = replica.fit != fit
            replica.fit = fit
        if changed:
            logger.info("replica %s %s reads: %s", replica.alias, "serves" if fit else "gets no", why)
            self._on_change(replica.alias, fit)

    # -- one measurement

    def _connect(self, alias: str) -> Any:
        """A connection of our own, built as Django builds the alias's (no pool)."""
        from django.db.utils import load_backend

        settings = dict(self._settings(alias))
        settings["OPTIONS"] = {k: v for k, v in (settings.get("OPTIONS") or {}).items() if k != "pool"}
        wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, alias)
        wrapper.ensure_connection()
        return wrapper

    @staticmethod
    def _measure(wrapper: Any) -> float | None:
        from .probes import mysql, postgresql

        with wrapper.cursor() as cursor:
            if wrapper.vendor == "postgresql":
                standby, lag = postgresql.replication_status(cursor)
            elif wrapper.vendor == "mysql":
                standby, lag = mysql.replication_status(cursor)
            else:
                return 0.0  # SQLite: the replica is the primary's own file
        # A server that is no standby replays nothing: it does not lag (dbcheck reports it).
        return lag if standby else 0.0


def _close(wrapper: Any) -> None:
    if wrapper is not None:
        try:
            wrapper.close()
        except Exception:
            logger.debug("closing a lag-measuring connection failed", exc_info=True)


def _restart_after_fork() -> None:
    for monitor in list(_monitors):
        if monitor._threads:
            monitor.start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_after_fork)
