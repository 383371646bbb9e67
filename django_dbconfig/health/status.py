"""The health of each alias, as the health endpoint reports it.

Each alias is probed with a connection built from the application's own settings
(`connections.create_connection(alias)`: the project's engines and their health
check), kept between probes as the application keeps its persistent connections:
a probe every second opens no new session. The probes run on PROBE_THREADS daemon
threads, whatever the number of aliases, started on the first probe; one probe per
alias is in flight at most, and a probe's connection may be used by whichever of
those threads is free (never by two at once). A probe connection idle for longer
than its alias's `conn_max_age` (IDLE_SECONDS when that is unlimited) is closed.

Results are kept for `DBCONFIG_HEALTH_CACHE_SECONDS` (default 5) per process. A
request whose alias has a probe in flight (a hung server) answers at once from the
last result, marked stale with its age; a request with no result to show waits for
the probe no longer than the alias's connect timeout plus a margin.

`stop_probing()` stops the threads and closes their connections (also run at process
exit); a later probe starts them again. After a fork, the child forgets (never
closes) its parent's threads and connections, and makes its own on use.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import queue
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
# Threads probing every alias of the process; a hung alias holds one until its probe ends.
PROBE_THREADS = 8
# How long a request waits for a probe still queued behind others (1,000 aliases probed
# at once): the connect timeout counts from when the probe starts.
QUEUE_SECONDS = 30.0
# How long a probe connection may stay idle when its alias keeps connections forever.
IDLE_SECONDS = 60.0
# How often an idle probing thread looks for probe connections to close.
SWEEP_SECONDS = 1.0


@dataclass(frozen=True)
class AliasHealth:
    """One alias's answer: public fields for everyone, `error` and TLS details for staff."""

    alias: str
    ok: bool
    latency_ms: float | None = None
    session: SessionHealth | None = None
    error: str | None = None  # scrubbed of secrets; shown to staff only
    checked_at: float = 0.0  # time.monotonic() of the probe
    stale: bool = False  # the last result, served while a newer probe is still running

    @property
    def age_s(self) -> float:
        """Seconds since the probe that gave this result started."""
        return round(max(0.0, time.monotonic() - self.checked_at), 1)

    @property
    def read_only(self) -> bool | None:
        return self.session.read_only if self.session is not None else None

    @property
    def replica_lag_s(self) -> float | None:
        return self.session.replica_lag_s if self.session is not None else None

    @property
    def role(self) -> str | None:
        return self.session.role if self.session is not None else None

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
            "role": self.role,
            "stale": self.stale,
            "age_s": self.age_s,
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


def runtime_aliases_probed() -> bool:
    """`DBCONFIG_HEALTH_RUNTIME_ALIASES` from settings: probe runtime aliases unnamed too (default False)."""
    value = getattr(settings, "DBCONFIG_HEALTH_RUNTIME_ALIASES", False)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(
            f"settings.DBCONFIG_HEALTH_RUNTIME_ALIASES must be True or False, got {value!r}."
        )
    return value


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
    """The health of each alias: cached when younger than `max_age`, else probed (all at once).

    An alias whose probe is still running (started by another request) answers with
    its last result, marked stale, without waiting.
    """
    max_age = cache_seconds() if max_age is None else max_age
    now = time.monotonic()
    waits: dict[str, _Job] = {}
    results: dict[str, AliasHealth] = {}
    for alias in dict.fromkeys(aliases):
        last = _cache.get(alias)
        if last is not None and max_age > 0 and now - last.checked_at < max_age:
            results[alias] = last
            continue
        job, submitted = _submit(alias, now)
        if not submitted and last is not None:
            results[alias] = dataclasses.replace(last, stale=True)
        else:
            waits[alias] = job
    for alias, job in waits.items():
        answer = _wait(job, _timeout(alias) + MARGIN)
        if answer is not None:
            results[alias] = answer
        else:
            results[alias] = result = _timed_out(alias, queued=job.running_since is None)
            _store(result)
    return [results[alias] for alias in dict.fromkeys(aliases)]


def _wait(job: _Job, seconds: float) -> AliasHealth | None:
    """The job's result, waiting `seconds` from when it starts (QUEUE_SECONDS while queued)."""
    while True:
        running = job.running_since
        deadline = running + seconds if running is not None else job.started + QUEUE_SECONDS
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        # Queued: look again soon, to count the connect timeout from the probe's start.
        if job.done.wait(left if running is not None else min(left, 0.05)):
            return job.result


def forget(aliases: Iterable[str] | None = None) -> None:
    """Drop cached results and close the probe connections (all aliases by default).

    For tests, and for aliases removed at run time. A connection busy in a probe is
    closed by its thread when the probe ends.
    """
    with _lock:
        names = list(_probes) if aliases is None else list(aliases)
        taken = [(alias, _probes.pop(alias, None)) for alias in names]
    for alias, state in taken:
        _cache.pop(alias, None)
        if state is not None:
            state.retire()


def stop_probing() -> None:
    """Stop the probing threads and close every probe connection (also run at process exit).

    A probe running on a hung server is left to end by itself (its thread is a daemon);
    its connection is closed then. A later probe starts the threads again.
    """
    global _workers
    with _lock:
        workers, _workers = _workers, None
    forget()
    if workers is not None:
        workers.stop()


def probe_threads() -> list[threading.Thread]:
    """The probing threads alive now (PROBE_THREADS at most)."""
    workers = _workers
    return workers.alive() if workers is not None else []


def _on_database_removed(sender: Any, alias: str, **kwargs: Any) -> None:
    forget([alias])


database_removed.connect(_on_database_removed, dispatch_uid="django_dbconfig.health.status.removed")


# ------------------------------------------------------------------------ probing


class _Job:
    def __init__(self, started: float) -> None:
        self.started = started
        self.done = threading.Event()
        self.running_since: float | None = None  # when a probing thread took it
        self.result: AliasHealth | None = None


class _Probe:
    """One alias's probe connection and the probe in flight, if any."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.lock = threading.Lock()
        self.job: _Job | None = None
        self.connection: Any = None
        self.last_used = 0.0
        self.retired = False  # forgotten: close the connection once no probe uses it

    def run(self, job: _Job) -> None:
        """Probe on this alias's connection (in a probing thread), then publish the result."""
        job.running_since = time.monotonic()
        try:
            job.result = self._probe()
        except BaseException as exc:  # a probe must answer, whatever happened
            job.result = _failed(self.alias, exc, started=job.started)
        finally:
            with self.lock:
                self.job = None
                self.last_used = time.monotonic()
                retired = self.retired
            if not retired and job.result is not None:
                # The one probe in flight: newer news than a timed-out answer kept meanwhile.
                _store(job.result, replace=True)
            job.done.set()
            if retired or _idle_limit(self.alias) == 0:
                self.close()

    def _probe(self) -> AliasHealth:
        if self.connection is None:
            self.connection = connections.create_connection(self.alias)
            # Used by whichever probing thread is free, never by two at once (self.job).
            self.connection.inc_thread_sharing()
        return probe_on(self.connection, self.alias)

    def close_if_idle(self, now: float) -> None:
        with self.lock:
            if self.job is not None or self.connection is None:
                return
            limit = _idle_limit(self.alias)
            if limit is None or now - self.last_used < limit:
                return
        self.close()

    def retire(self) -> None:
        with self.lock:
            self.retired = True
            busy = self.job is not None
        if not busy:
            self.close()

    def close(self) -> None:
        with self.lock:
            connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                logger.debug("closing the probe connection of %r failed", self.alias, exc_info=True)


class _Workers:
    """PROBE_THREADS daemon threads taking probes from one queue; idle, they close idle connections."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[tuple[_Probe, _Job] | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.stopping = False

    def submit(self, state: _Probe, job: _Job) -> None:
        with self.lock:
            if len(self.threads) < PROBE_THREADS:
                thread = threading.Thread(
                    target=self._run, daemon=True, name=f"dbconfig-health-{len(self.threads) + 1}"
                )
                self.threads.append(thread)
                thread.start()
        self.jobs.put((state, job))

    def alive(self) -> list[threading.Thread]:
        return [thread for thread in self.threads if thread.is_alive()]

    def stop(self) -> None:
        self.stopping = True
        for _ in self.threads:
            self.jobs.put(None)
        deadline = time.monotonic() + 1.0
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while not self.stopping:
            try:
                item = self.jobs.get(timeout=SWEEP_SECONDS)
            except queue.Empty:
                _close_idle()
                continue
            if item is None:
                return
            state, job = item
            state.run(job)


def _submit(alias: str, now: float) -> tuple[_Job, bool]:
    """The probe in flight for `alias`, or a new one; whether it is new."""
    global _workers  # noqa: PLW0603 - one set of threads per process
    with _lock:
        state = _probes.get(alias)
        if state is None:
            state = _probes[alias] = _Probe(alias)
        if _workers is None:
            _workers = _Workers()
        workers = _workers
    with state.lock:
        if state.job is not None:
            return state.job, False
        job = state.job = _Job(now)
    workers.submit(state, job)
    return job, True


def _close_idle() -> None:
    now = time.monotonic()
    with _lock:
        states = list(_probes.values())
    for state in states:
        state.close_if_idle(now)


def _idle_limit(alias: str) -> float | None:
    """Seconds a probe connection may stay idle: the alias's CONN_MAX_AGE, IDLE_SECONDS if unlimited."""
    entry = connections.settings.get(alias)
    if entry is None:
        return 0.0
    max_age = entry.get("CONN_MAX_AGE", 0)
    if max_age is None:
        return IDLE_SECONDS
    try:
        return max(0.0, float(max_age))
    except (TypeError, ValueError):
        return 0.0


def _store(result: AliasHealth, *, replace: bool = False) -> None:
    """Keep `result` unless a newer one is kept already (or `replace`)."""
    with _lock:
        if result.alias not in _probes:
            return  # forgotten meanwhile (removed)
        kept = _cache.get(result.alias)
        if replace or kept is None or kept.checked_at <= result.checked_at:
            _cache[result.alias] = result


def probe(alias: str) -> AliasHealth:
    """Probe `alias` on this thread's Django connection, as a request would use it."""
    return probe_on(connections[alias], alias)


def probe_on(connection: Any, alias: str) -> AliasHealth:
    """Probe `alias` on `connection`: what a request does with it, then `SELECT 1`."""

    started = time.monotonic()
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


def _timed_out(alias: str, *, queued: bool = False) -> AliasHealth:
    # Dated when the wait ended: cached as a fresh answer, so the requests that follow
    # within the cache time get it at once, and later ones the stale one.
    seconds = _timeout(alias)
    message = (
        f"not probed within {QUEUE_SECONDS:g} s: every probing thread is busy"
        if queued
        else f"no answer within {seconds:g} s (connect timeout) plus {MARGIN:g} s"
    )
    logger.warning("database %r failed its health probe: %s", alias, message)
    return AliasHealth(alias, False, error=message, checked_at=time.monotonic())


def _timeout(alias: str) -> float:

    entry = connections.settings.get(alias)
    return connect_timeout(vendor_of(entry), entry) if entry is not None else 0.0


_lock = threading.Lock()
_probes: dict[str, _Probe] = {}
_cache: dict[str, AliasHealth] = {}
_workers: _Workers | None = None


def _forget_after_fork() -> None:
    # A forked worker (gunicorn --preload) has none of its parent's threads, and its
    # parent's probe connections are not its own: forgotten, never closed.
    global _lock, _workers  # noqa: PLW0603
    _lock = threading.Lock()
    _workers = None
    _probes.clear()
    _cache.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(stop_probing)
