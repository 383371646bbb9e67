"""Replication lag, measured off the request path, once a second per replica and process.

`watch(alias, settings, callback)` returns the process's one `ReplicaLag` for that
replica (the same server). Every replica is measured by the same few daemon
threads (WORKERS, and a guard; started on the first watch), whatever the number of replicas: a
replica is due once a second, one measurement of it at a time, taken by whichever
worker is free. Each replica keeps one connection of its own (never one of
Django's per-request connections), so the server sees one session per replica at
most. After each measurement every subscriber hears the lag in seconds, or None
when the replica cannot be reached, its lag cannot be measured (replication
stopped), or a measurement hangs longer than its connect timeout (then its worker
stays with it, and another is started in its place until the hang ends). A router
decides from that which replicas get reads, so a request only reads a ready answer
and never waits for a server. A measurer whose subscribers are all gone stops and
closes its connection.
"""

from __future__ import annotations

import heapq
import itertools
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
# Threads measuring every replica of the process, and a guard. A measurement that hangs
# (a server stopped with SIGSTOP answers nothing, and its kernel keeps the connection up)
# holds its thread: the guard reports it and starts another in its place, which leaves
# once the hang has ended.
WORKERS = 2
Callback = Callable[[str, "float | None"], None]

_lock = threading.Lock()
_measurers: dict[tuple[str, ...], ReplicaLag] = {}


class ReplicaLag:
    """The lag of one replica, measured by the process's workers for all its subscribers."""

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
        self._stopped = False
        self._connection: Any = None

    def __repr__(self) -> str:
        return f"ReplicaLag({self.alias!r}, lag_s={self.lag_s!r})"

    @property
    def running(self) -> bool:
        """Still measured (someone listens)."""
        return not self._stopped

    def unsubscribe(self, callback: Callback) -> None:
        with _lock:
            self._listeners = [ref for ref in self._listeners if ref() not in (None, callback)]

    def stop(self) -> None:
        """Measure no more; the connection closes after the measurement in progress, if any."""
        self._stopped = True
        _scheduler.wake()

    def measure_once(self) -> None:
        """One measurement, reported to the subscribers (called by a worker, one at a time)."""
        started = time.monotonic()
        self.measuring_since = started
        try:
            if self._connection is None:
                self._connection = _connect(self.alias, self.settings)
            lag = _measure(self._connection)
            self.error = None
        except Exception as exc:
            self.error = type(exc).__name__
            lag = None
            _close(self._connection)
            self._connection = None
        finally:
            self.measuring_since = None
            self._hung = False
        self.started = started
        self._report(lag)
        if not self._has_listeners():
            self._stopped = True

    def close(self) -> None:
        """Close the measuring connection and leave the registry (after the last measurement)."""
        _close(self._connection)
        self._connection = None
        self._stopped = True
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


class _Scheduler:
    """WORKERS daemon threads taking due replicas from one heap (earliest first)."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.due: list[tuple[float, int, ReplicaLag]] = []
        self.busy: set[ReplicaLag] = set()  # measured right now, by some worker
        self.threads: list[threading.Thread] = []
        self.guard: threading.Thread | None = None
        self.order = itertools.count()

    def add(self, measurer: ReplicaLag) -> None:
        with self.cond:
            heapq.heappush(self.due, (time.monotonic(), next(self.order), measurer))
            self.threads = [thread for thread in self.threads if thread.is_alive()]
            self._replace_hung()
            if self.guard is None or not self.guard.is_alive():
                self.guard = threading.Thread(target=self._watch, daemon=True, name="dbconfig-lag-guard")
                self.guard.start()
            self.cond.notify()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _next(self) -> ReplicaLag:
        """Wait for the next due replica."""
        with self.cond:
            while True:
                now = time.monotonic()
                if self.due and self.due[0][0] <= now:
                    _, _, measurer = heapq.heappop(self.due)
                    self.busy.add(measurer)
                    return measurer
                wait = self.due[0][0] - now if self.due else INTERVAL
                self.cond.wait(min(wait, INTERVAL / 2))

    def _work(self) -> None:
        while True:
            measurer = self._next()
            try:
                if not measurer._stopped:
                    measurer.measure_once()
            except Exception:
                logger.exception("measuring the lag of %s failed", measurer.alias)
            with self.cond:
                self.busy.discard(measurer)
                stopped = measurer._stopped
                if not stopped:
                    heapq.heappush(
                        self.due, (measurer.started + measurer.interval, next(self.order), measurer)
                    )
                # A thread started in place of one held by a hang that has ended: one too many.
                surplus = self._working() > WORKERS
                if surplus:
                    self.threads = [t for t in self.threads if t is not threading.current_thread()]
                    self.cond.notify()
            if stopped:
                measurer.close()
            if surplus:
                return

    def _watch(self) -> None:
        """Report measurements that hang, and start a thread in place of each (the guard thread)."""
        while True:
            time.sleep(INTERVAL / 2)
            with self.cond:
                now = time.monotonic()
                for measurer in list(self.busy):
                    measurer.check_hang(now)
                self._replace_hung()

    def _working(self) -> int:
        """Threads alive and not held by a hung measurement (call under self.cond)."""
        hung = sum(1 for measurer in self.busy if measurer._hung)
        return sum(1 for thread in self.threads if thread.is_alive()) - hung

    def _replace_hung(self) -> None:
        """Keep WORKERS threads free of hangs: a replica that hangs holds its thread, not the others."""
        while self._working() < WORKERS:
            thread = threading.Thread(target=self._work, daemon=True, name=f"dbconfig-lag-{next(self.order)}")
            self.threads.append(thread)
            thread.start()


_scheduler = _Scheduler()


def watch(alias: str, settings: Mapping[str, Any], callback: Callback) -> ReplicaLag:
    """The process's measurer of `alias` (on the server `settings` name), `callback` subscribed to it.

    `callback(alias, lag_s)` is called after every measurement; it must be a bound
    method, held weakly: a router that is gone stops listening by itself.
    """
    key = (alias, *(str(settings.get(k) or "") for k in ("ENGINE", "HOST", "PORT", "NAME", "USER")))
    with _lock:
        measurer = _measurers.get(key)
        new = measurer is None or not measurer.running
        if measurer is None or new:
            measurer = _measurers[key] = ReplicaLag(alias, settings)
        # Listening before it is scheduled: it never sees itself without listeners at first.
        measurer._listeners.append(weakref.WeakMethod(callback))
        measured, lag = measurer.measured, measurer.lag_s
    if new:
        _scheduler.add(measurer)
    if measured:
        callback(alias, lag)  # what is known already; the next measurement follows within a second
    return measurer


def threads() -> list[threading.Thread]:
    """The threads alive now: WORKERS measuring (one more per measurement that hangs) and the guard."""
    guard = [_scheduler.guard] if _scheduler.guard is not None else []
    return [thread for thread in [*_scheduler.threads, *guard] if thread.is_alive()]


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
    # Measured by whichever worker is free, one at a time (the scheduler's `busy` set).
    wrapper.inc_thread_sharing()
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


def _forget_after_fork() -> None:
    """Threads do not survive a fork: the child measures with threads and connections of its own.

    The parent's connections are forgotten, never closed (their sockets are the parent's).
    """
    global _lock, _scheduler  # noqa: PLW0603
    _lock = threading.Lock()  # another thread may have held it at the fork
    measurers = [m for m in _measurers.values() if not m._stopped]
    _scheduler = _Scheduler()
    for measurer in measurers:
        measurer._connection = None
        measurer.measuring_since = None
        _scheduler.add(measurer)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
