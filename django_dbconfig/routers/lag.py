"""Replication lag, measured off the request path, once a second per replica and process.

`watch(alias, settings, callback)` returns the process's one `ReplicaLag` for that
replica (the same server), starting its daemon thread on first use. The thread
keeps its own connection to the replica (never one of Django's per-request
connections), measures the lag at most once a second and passes each result to
every subscriber: the lag in seconds, or None when the replica cannot be reached,
its lag cannot be measured (replication stopped), or a measurement hangs longer
than its connect timeout. A router decides from that which replicas get reads, so
a request only reads a ready answer and never waits for a server. A measurer
whose subscribers are all gone stops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from django.db.utils import load_backend

from django_dbconfig.backends import probe_module

logger = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two measurements of one replica
Callback = Callable[[str, "float | None"], None]

_lock = threading.Lock()
_measurers: dict[tuple[str, ...], ReplicaLag] = {}
_guard_thread: threading.Thread | None = None


class ReplicaLag:
    """The lag of one replica, measured in one daemon thread for all its subscribers."""

    def __init__(self, alias: str, settings: Mapping[str, Any], *, interval: float = INTERVAL) -> None:
        self.alias = alias
        self.settings = dict(settings)
        self.interval = interval
        self.lag_s: float | None = None
        self.measured = False  # a first measurement (or failure) has been reported
        self.error: str | None = None
        self.measuring_since: float | None = None
        # When the measurement last reported started (time.monotonic()): an answer
        # to a question asked before some event is no news about after it.
        self.started = 0.0
        self._hung = False
        self._listeners: list[weakref.WeakMethod[Callback]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"ReplicaLag({self.alias!r}, lag_s={self.lag_s!r})"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def unsubscribe(self, callback: Callback) -> None:
        with _lock:
            self._listeners = [ref for ref in self._listeners if ref() not in (None, callback)]

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"dbconfig-lag-{self.alias}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        connection = None
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self.measuring_since = started
                try:
                    if connection is None:
                        connection = _connect(self.alias, self.settings)
                    lag = _measure(connection)
                    self.error = None
                except Exception as exc:
                    self.error = type(exc).__name__
                    lag = None
                    _close(connection)
                    connection = None
                finally:
                    self.measuring_since = None
                    self._hung = False
                self.started = started
                self._report(lag)
                if not self._has_listeners():
                    break
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            _close(connection)
            self._forget()

    def _report(self, lag: float | None) -> None:
        changed = (lag is None) != (self.lag_s is None) or not self.measured
        self.lag_s, self.measured = lag, True
        if changed:
            logger.info(
                "replica %s: %s",
                self.alias,
                f"lag {lag:.3f} s" if lag is not None else self.error or "lag unknown",
            )
        with _lock:
            listeners = [ref() for ref in self._listeners]
        for listener in listeners:
            if listener is not None:
                listener(self.alias, lag)

    def _has_listeners(self) -> bool:
        with _lock:
            self._listeners = [ref for ref in self._listeners if ref() is not None]
            return bool(self._listeners)

    def _forget(self) -> None:
        with _lock:
            for key, measurer in list(_measurers.items()):
                if measurer is self:
                    del _measurers[key]

    def check_hang(self, now: float) -> None:
        """A measurement running longer than the connect timeout (plus a round) counts as no answer."""
        since = self.measuring_since
        if since is not None and not self._hung and now - since > _timeout(self.settings) + self.interval:
            self._hung = True
            self.error = "no answer"
            self._report(None)


def watch(alias: str, settings: Mapping[str, Any], callback: Callback) -> ReplicaLag:
    """The process's measurer of `alias` (on the server `settings` name), `callback` subscribed to it.

    `callback(alias, lag_s)` is called after every measurement; it must be a bound
    method, held weakly: a router that is gone stops listening by itself.
    """
    global _guard_thread  # noqa: PLW0603 - one guard thread per process
    key = (alias, *(str(settings.get(k) or "") for k in ("ENGINE", "HOST", "PORT", "NAME", "USER")))
    with _lock:
        measurer = _measurers.get(key)
        new = measurer is None or not measurer.running
        if measurer is None or new:
            measurer = _measurers[key] = ReplicaLag(alias, settings)
        # Listening before the thread starts: it never sees itself without listeners at first.
        measurer._listeners.append(weakref.WeakMethod(callback))
        if new:
            measurer.start()
        measured, lag = measurer.measured, measurer.lag_s
        if _guard_thread is None or not _guard_thread.is_alive():
            _guard_thread = threading.Thread(target=_guard, daemon=True, name="dbconfig-lag-guard")
            _guard_thread.start()
    if measured:
        callback(alias, lag)  # what is known already; the next measurement follows within a second
    return measurer


def _guard() -> None:
    while True:
        time.sleep(INTERVAL / 2)
        now = time.monotonic()
        with _lock:
            measurers = list(_measurers.values())
        for measurer in measurers:
            measurer.check_hang(now)


def _timeout(settings: Mapping[str, Any]) -> float:
    options = settings.get("OPTIONS") or {}
    try:
        return max(float(options.get("connect_timeout") or 5), 1.0)
    except (TypeError, ValueError):
        return 5.0


def _connect(alias: str, settings: Mapping[str, Any]) -> Any:
    """A connection of our own, built as Django builds the alias's (no pool)."""

    own = dict(settings)
    own["OPTIONS"] = {k: v for k, v in (settings.get("OPTIONS") or {}).items() if k != "pool"}
    wrapper = load_backend(own["ENGINE"]).DatabaseWrapper(own, alias)
    wrapper.ensure_connection()
    return wrapper


def _measure(wrapper: Any) -> float | None:
    with wrapper.cursor() as cursor:
        standby, lag = probe_module(wrapper.vendor).replication_status(cursor)
    # A server that is no standby replays nothing: it does not lag (dbcheck reports it).
    return lag if standby else 0.0


def _close(wrapper: Any) -> None:
    if wrapper is not None:
        try:
            wrapper.close()
        except Exception:
            logger.debug("closing a lag-measuring connection failed", exc_info=True)


def _restart_after_fork() -> None:
    """Threads do not survive a fork: the child measures with threads of its own."""
    global _guard_thread, _lock  # noqa: PLW0603
    _lock = threading.Lock()  # another thread may have held it at the fork
    _guard_thread = None
    for measurer in list(_measurers.values()):
        measurer._thread = None
        measurer.start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_after_fork)
