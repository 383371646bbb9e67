"""The health of each alias, as the health endpoint reports it.

Each alias is probed on the application's own connection (`django.db.connections[alias]`,
through the project's engines and their health check), not on a fresh one: a
persistent connection is reused from one probe to the next, as a request would
reuse it. Django's connections belong to the thread that opened them, so every
alias has one long-lived daemon thread that runs its probes; a request waits for
the result no longer than the alias's connect timeout plus a margin. A hung alias
therefore costs one stuck thread (never one per request), and the others still report.

Results are kept for `DBCONFIG_HEALTH_CACHE_SECONDS` (default 5) per process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from django_dbconfig.backends import FAMILIES, connect_timeout, probe_module, vendor_of
from django_dbconfig.backends.base.probe import MARGIN, SessionHealth, scrub, secrets_of
from django_dbconfig.runtime.databases import database_removed

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class AliasHealth:
    """One alias's answer: public fields for everyone, `error` and TLS details for staff."""

    alias: str
    ok: bool
    latency_ms: float | None = None
    session: SessionHealth | None = None
    error: str | None = None  # scrubbed of secrets; shown to staff only
    checked_at: float = 0.0  # time.monotonic() of the probe

    @property
    def read_only(self) -> bool | None:
        return self.session.read_only if self.session is not None else None

    @property
    def replica_lag_s(self) -> float | None:
        return self.session.replica_lag_s if self.session is not None else None

    @property
    def tls_in_use(self) -> bool | None:
        return self.session.tls_in_use if self.session is not None else None

    def as_json(self, *, staff: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "alias": self.alias,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "read_only": self.read_only,
            "replica_lag_s": self.replica_lag_s,
        }
        if staff:
            session = self.session
            data["error"] = self.error
            data["tls"] = (
                None
                if session is None or session.tls_in_use is None
                else {
                    "in_use": session.tls_in_use,
                    "version": session.tls_version,
                    "cipher": session.tls_cipher,
                }
            )
        return data


def cache_seconds() -> float:
    """`DBCONFIG_HEALTH_CACHE_SECONDS` from settings (0 turns the cache off)."""

    value = getattr(settings, "DBCONFIG_HEALTH_CACHE_SECONDS", DEFAULT_CACHE_SECONDS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ImproperlyConfigured(
            f"settings.DBCONFIG_HEALTH_CACHE_SECONDS must be a number of seconds >= 0, got {value!r}."
        )
    return float(value)


def cached(aliases: Sequence[str], *, max_age: float | None = None) -> list[AliasHealth] | None:
    """The cached health of every alias when all are younger than `max_age`, else None."""
    max_age = cache_seconds() if max_age is None else max_age
    if max_age <= 0:
        return None
    now = time.monotonic()
    found = []
    for alias in dict.fromkeys(aliases):
        result = _cache.get(alias)
        if result is None or now - result.checked_at >= max_age:
            return None
        found.append(result)
    return found


def check_aliases(aliases: Sequence[str], *, max_age: float | None = None) -> list[AliasHealth]:
    """The health of each alias: cached when younger than `max_age`, else probed (all at once)."""
    max_age = cache_seconds() if max_age is None else max_age
    now = time.monotonic()
    jobs: dict[str, tuple[_Job, float]] = {}
    results: dict[str, AliasHealth] = {}
    for alias in dict.fromkeys(aliases):
        cached = _cache.get(alias)
        if cached is not None and max_age > 0 and now - cached.checked_at < max_age:
            results[alias] = cached
        else:
            jobs[alias] = (_prober(alias).submit(), now + _timeout(alias) + MARGIN)
    for alias, (job, deadline) in jobs.items():
        answered = job.done.wait(max(0.0, deadline - time.monotonic()))
        result = job.result if answered and job.result is not None else _timed_out(alias, now)
        _cache[alias] = results[alias] = result
    return [results[alias] for alias in dict.fromkeys(aliases)]


def forget(aliases: Iterable[str] | None = None) -> None:
    """Drop cached results and close the probe threads' connections (all aliases by default).

    For tests, and for aliases removed at run time.
    """
    names = list(_probers) if aliases is None else list(aliases)
    for alias in names:
        _cache.pop(alias, None)
        prober = _probers.pop(alias, None)
        if prober is not None:
            prober.stop()


def _on_database_removed(sender: Any, alias: str, **kwargs: Any) -> None:
    forget([alias])


database_removed.connect(_on_database_removed, dispatch_uid="django_dbconfig.health.status.removed")


# ------------------------------------------------------------------------ probing


class _Job:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: AliasHealth | None = None


class _Prober:
    """One daemon thread per alias: its Django connection lives in that thread between probes."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.pending: _Job | None = None  # waiting or running; joined by concurrent requests
        self.queued = False
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name=f"dbconfig-health-{alias}", daemon=True)
        self.thread.start()

    def submit(self) -> _Job:
        """The probe in flight, or a new one: concurrent requests share one round trip."""
        with self.lock:
            if self.pending is None:
                self.pending = _Job()
                self.queued = True
                self.wake.notify()
            return self.pending

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.wake.notify()
        # A thread stuck on a hung server is left behind (it is a daemon); its connection
        # is closed when it comes back.
        self.thread.join(1.0)

    def _loop(self) -> None:

        try:
            while True:
                with self.lock:
                    while not self.queued and not self.stopping:
                        self.wake.wait()
                    if self.stopping:
                        return
                    self.queued = False
                    job = self.pending
                assert job is not None
                try:
                    job.result = probe(self.alias)
                except BaseException as exc:  # a probe must answer, whatever happened
                    job.result = _failed(self.alias, exc)
                finally:
                    with self.lock:
                        self.pending = None
                    job.done.set()
        finally:
            if self.alias in connections:
                connections[self.alias].close()


def probe(alias: str) -> AliasHealth:
    """Probe `alias` on this thread's Django connection, as a request would use it."""

    started = time.monotonic()
    connection = connections[alias]
    # What Django does at the start of a request: drop a connection past CONN_MAX_AGE
    # or broken, and arm the per-request health check (the engines' socket check).
    connection.close_if_unusable_or_obsolete()
    try:
        with connection.cursor() as cursor:
            start = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            latency_ms = round((time.perf_counter() - start) * 1000, 2)
            session = _session_health(connection, cursor)
    except Exception as exc:
        # Keep nothing half-open: the next probe starts from a clean connection.
        connection.close()
        return _failed(alias, exc, started=started)
    return AliasHealth(alias, True, latency_ms, session, checked_at=started)


def _session_health(connection: Any, cursor: Any) -> SessionHealth:
    if connection.vendor not in FAMILIES:
        return SessionHealth(read_only=False)
    health: SessionHealth = probe_module(connection.vendor).session_health(connection, cursor)
    return health


def _failed(alias: str, exc: BaseException, *, started: float | None = None) -> AliasHealth:

    cause = exc.__cause__ or exc
    secrets = secrets_of(connections.settings.get(alias) or {})
    message = scrub(f"{type(cause).__name__}: {cause}".strip(), secrets)
    logger.warning("database %r failed its health probe: %s", alias, message)
    return AliasHealth(alias, False, error=message, checked_at=started or time.monotonic())


def _timed_out(alias: str, started: float) -> AliasHealth:
    seconds = _timeout(alias)
    message = f"no answer within {seconds:g} s (connect timeout) plus {MARGIN:g} s"
    logger.warning("database %r failed its health probe: %s", alias, message)
    return AliasHealth(alias, False, error=message, checked_at=started)


def _timeout(alias: str) -> float:

    entry = connections.settings[alias]
    return connect_timeout(vendor_of(entry), entry)


_lock = threading.Lock()
_probers: dict[str, _Prober] = {}
_cache: dict[str, AliasHealth] = {}


def _prober(alias: str) -> _Prober:
    with _lock:
        prober = _probers.get(alias)
        if prober is None or not prober.thread.is_alive():
            prober = _probers[alias] = _Prober(alias)
        return prober


def _after_fork() -> None:
    # A forked worker (gunicorn --preload) has none of its parent's threads; their
    # connections were dropped by the engines' fork hook (backends/base/forks.py).
    global _lock  # noqa: PLW0603 - another thread may have held it at the fork
    _lock = threading.Lock()
    _probers.clear()
    _cache.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
