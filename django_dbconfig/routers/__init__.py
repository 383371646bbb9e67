"""DatabaseRouter: models to aliases, reads to replicas, reads pinned to the primary after a write.

Per-request state (which primaries this request or task has written to, the replica
it reads each primary from, and the `pin_to_primary()` / `use_database()` blocks)
lives in one context variable, so threads and asyncio tasks never see each other's
pins. The write pins and replica choices are cleared when a request starts and when
it finishes (Django's request signals, connected when the router is created).

Reads of a primary with an atomic block open in this thread go to that primary
(transactions.py). A replica that refuses connections when a request first reads
from it is skipped, and gets no reads until it answers again.

The read-only guard (readonly.py) is installed from here, on Django's
connection_created signal.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import itertools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created

from django_dbconfig.conf.config import last_config
from django_dbconfig.core.errors import DbConfigError, did_you_mean, one_of
from django_dbconfig.routers import lag, liveness, transactions
from django_dbconfig.routers.readonly import (
    ReadOnlyDatabaseError,
    ReadOnlyInternalError,
    ReadOnlyOperationalError,
    guard_open_connections,
    on_connection_created,
)
from django_dbconfig.routers.transactions import OPEN as OPEN_TRANSACTIONS
from django_dbconfig.runtime.databases import (
    database_added,
    database_removed,
    migrates_like,
    runtime_replicas,
    runtime_values,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DatabaseRouter",
    "ReadOnlyDatabaseError",
    "ReadOnlyInternalError",
    "ReadOnlyOperationalError",
    "connect_signals",
    "pin_primaries",
    "pin_to_primary",
    "reset_pins",
    "use_database",
    "written_primaries",
]


@dataclass(frozen=True, slots=True)
class _State:
    """What the current request or task has asked for. Immutable: a change is a new `set()`."""

    forced: str | None = None  # use_database(alias)
    pin_all: bool = False  # pin_to_primary()
    written: frozenset[str] = field(default_factory=frozenset)  # primaries written to
    # Primaries whose reads go to the primary: those written to, and those carried
    # over from an earlier request (pin_primaries(), the read-your-writes middleware).
    pinned: frozenset[str] = field(default_factory=frozenset)
    # Primary -> the replica this request or task reads it from. Never mutated.
    chosen: Mapping[str, str] = field(default_factory=dict)
    # The choices that apply as they are (none pinned, nothing forced): the hot path's one lookup.
    reads: Mapping[str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        reads = (
            {}
            if self.forced is not None or self.pin_all
            else {primary: replica for primary, replica in self.chosen.items() if primary not in self.pinned}
        )
        object.__setattr__(self, "reads", reads)


_EMPTY = _State()
# None (the default) means "nothing pinned": the hot path tests one identity.
_state: contextvars.ContextVar[_State | None] = contextvars.ContextVar(
    "django_dbconfig_router_state", default=None
)


def _set(state: _State) -> None:
    _state.set(None if state == _EMPTY else state)


@contextlib.contextmanager
def pin_to_primary() -> Iterator[None]:
    """Send every read inside the block to the primary of its alias."""
    before = (_state.get() or _EMPTY).pin_all
    _set(replace(_state.get() or _EMPTY, pin_all=True))
    try:
        yield
    finally:
        # Restore only our own field: writes pinned inside the block stay pinned.
        _set(replace(_state.get() or _EMPTY, pin_all=before))


@contextlib.contextmanager
def use_database(alias: str) -> Iterator[None]:
    """Send every routed read and write inside the block to `alias`."""

    known = list(connections)
    if alias not in known:
        raise DbConfigError(
            f'use_database("{alias}"): there is no such alias in DATABASES. '
            f"Known aliases: {one_of(known)}." + did_you_mean(alias, known)
        )
    before = (_state.get() or _EMPTY).forced
    _set(replace(_state.get() or _EMPTY, forced=alias))
    try:
        yield
    finally:
        _set(replace(_state.get() or _EMPTY, forced=before))


def reset_pins(**_: Any) -> None:
    """Forget the writes and the replica choices of this request or task.

    Reads go to replicas again, and the next read picks a replica afresh.
    Connected to `request_started` and `request_finished`. Outside a request (a
    task-queue job, a long-lived thread) `django_dbconfig.contrib.tasks.task_finished()`
    calls it (Celery: `django_dbconfig.contrib.celery.connect(app)`), or call it yourself.
    Open `pin_to_primary()` and `use_database()` blocks are left as they are.
    """
    state = _state.get()
    if state is not None and (state.pinned or state.chosen):
        _set(replace(state, written=frozenset(), pinned=frozenset(), chosen={}))


def written_primaries() -> frozenset[str]:
    """The primaries (aliases with replicas) this request or task has written to."""
    return (_state.get() or _EMPTY).written


def pin_primaries(aliases: Iterable[str]) -> None:
    """Send reads of these primaries to the primary until `reset_pins()` (the request's end).

    For a pin carried over from an earlier request, such as the read-your-writes
    middleware's cookie; writes in this request are not counted as such.
    """
    current = _state.get() or _EMPTY
    _set(replace(current, pinned=current.pinned | frozenset(aliases)))


_UNSET = object()


class _Family:
    """A primary's replicas: `fit` may serve reads now, `pick()` gives the next of them (or the primary)."""

    __slots__ = ("fit", "pick", "primary", "replicas")

    def __init__(self, primary: str, replicas: tuple[str, ...]) -> None:
        self.primary = primary
        self.replicas = replicas
        self.fit: frozenset[str] = frozenset(replicas)
        self.pick: Callable[[], str] = _picker(primary, replicas)


def _picker(primary: str, replicas: tuple[str, ...]) -> Callable[[], str]:
    # Round robin: cheap, even, and itertools.cycle's next() is atomic under the GIL.
    return itertools.cycle(replicas).__next__ if replicas else itertools.repeat(primary).__next__


class DatabaseRouter:
    """Route by app label or model; spread reads over replicas; read your own writes.

    Django creates it with no arguments: routes then come from the setting
    `DBCONFIG_ROUTES` or else the config `build_databases()` built, replicas from
    that config or else from each alias's `TEST["MIRROR"]`, aliases from
    `settings.DATABASES`, and each replica's `max_replica_lag` from that config.
    The keyword arguments replace those sources (for tests, or an instance put
    directly in `DATABASE_ROUTERS`); `max_replica_lag` maps replicas to seconds.
    """

    def __init__(
        self,
        *,
        routes: Mapping[str, str] | None = None,
        replicas: Mapping[str, Iterable[str]] | None = None,
        databases: Mapping[str, Any] | None = None,
        max_replica_lag: Mapping[str, float] | None = None,
    ) -> None:

        aliases = tuple(settings.DATABASES if databases is None else databases)
        self._aliases = frozenset(aliases)
        config = last_config()
        route_sources: Mapping[str, str]
        if routes is not None:
            route_sources = dict.fromkeys(routes, "DatabaseRouter(routes=...)")
        elif getattr(settings, "DBCONFIG_ROUTES", None) is not None:
            routes = getattr(settings, "DBCONFIG_ROUTES")  # noqa: B009 - not in django-stubs
            if not isinstance(routes, Mapping):
                raise DbConfigError(
                    "settings.DBCONFIG_ROUTES must be a dict of app_label or app_label.ModelName "
                    f'to alias, e.g. {{"reports": "analytics"}}; got {type(routes).__name__}.'
                )
            route_sources = {key: f"settings.DBCONFIG_ROUTES[{key!r}]" for key in routes}
        elif config is not None:
            routes, route_sources = config.routes, config.route_sources
        else:
            routes, route_sources = {}, {}

        if replicas is None:
            if config is not None:
                replicas = config.replicas
                replica_source = "the replica_of keys of the configuration"
            else:
                replicas = _mirrors(settings.DATABASES if databases is None else databases)
                replica_source = "settings.DATABASES (TEST.MIRROR)"
        else:
            replica_source = "DatabaseRouter(replicas=...)"

        self._replica_of: dict[str, str] = {}
        self._families: dict[str, _Family] = {}
        # model class -> (alias, its family or None); filled on first use of each model,
        # emptied when the families change (under the lock, so no stale family is cached).
        self._cache: dict[type, tuple[str, _Family | None]] = {}
        self._cache_lock = threading.Lock()
        self._entries: dict[str, Any] = dict(settings.DATABASES if databases is None else databases)
        for primary, listed in replicas.items():
            names = tuple(listed)
            for name in (primary, *names):
                if name not in aliases:
                    raise DbConfigError(
                        f'{replica_source}: "{name}" is not an alias in DATABASES. '
                        f"Known aliases: {one_of(aliases)}." + did_you_mean(name, aliases)
                    )
            for name in names:
                self._replica_of[name] = primary
            if names:
                self._families[primary] = _Family(primary, names)

        if max_replica_lag is None and config is not None:
            max_replica_lag = {
                name: config.values(name)["max_replica_lag"] / 1000
                for name in self._replica_of
                if name in config.aliases and "max_replica_lag" in config.values(name)
            }
        self._limits = {k: float(v) for k, v in (max_replica_lag or {}).items() if k in self._replica_of}
        self._lags: dict[str, lag.ReplicaLag] = {}
        self._fit: set[str] = set()  # replicas with a limit, measured within it
        # Replicas that refused a connection -> when; they get no reads until they answer again.
        self._dead: dict[str, float] = {}
        self._watching_dead: dict[str, lag.ReplicaLag] = {}

        self._app_routes: dict[str, str] = {}
        self._model_routes: dict[str, str] = {}
        for key, alias in routes.items():
            where = route_sources.get(key, f"route {key!r}")
            self._check_route(key, alias, where, aliases)
            if "." in key:
                self._model_routes[key.lower()] = alias
            else:
                self._app_routes[key] = alias
        connect_signals()
        guard_open_connections()
        transactions.track_open_connections()
        # Runtime replicas (add_database(replica_of=...)): those added already, and those to come.
        database_added.connect(self._runtime_added, sender=None)
        database_removed.connect(self._runtime_removed, sender=None)
        for name, primary in runtime_replicas().items():
            self._runtime_added(alias=name, replica_of=primary)
        if self._limits:
            # Replicas with a limit get reads once measured within it (lag.py).
            for family in self._families.values():
                self._refresh(family)
            entries = settings.DATABASES if databases is None else databases
            for name in self._limits:
                self._lags[name] = lag.watch(name, _with_django_defaults(entries[name]), self._measured)

    def _measured(self, replica: str, lag_s: float | None) -> None:
        """Called by the measuring thread after each measurement: re-pick on a change of fitness."""
        fit = lag_s is not None and lag_s <= self._limits[replica]
        if fit == (replica in self._fit):
            return
        if fit:
            self._fit.add(replica)
        else:
            self._fit.discard(replica)
        logger.info("replica %s %s reads (lag %s)", replica, "gets" if fit else "gets no", lag_s)
        self._refresh(self._families[self._replica_of[replica]])

    def _refresh(self, family: _Family) -> None:
        fit = tuple(
            name
            for name in family.replicas
            if (name not in self._limits or name in self._fit) and name not in self._dead
        )
        with self._cache_lock:
            family.fit = frozenset(fit)
            family.pick = _picker(family.primary, fit)
            self._cache = {}

    def _refused(self, replica: str, error: str) -> None:
        """`replica` refused a connection: no reads until it answers a measurement started after now."""
        with self._cache_lock:
            if replica in self._dead:
                return
            self._dead[replica] = time.monotonic()
        self._fit.discard(replica)
        logger.warning(
            "replica %s refused a connection (%s): it gets no reads until it answers", replica, error
        )
        self._refresh(self._families[self._replica_of[replica]])
        # The replica's measurer (lag.py) tries it once a second, off the request path.
        settings_dict = _with_django_defaults(self._entries[replica])
        self._watching_dead[replica] = lag.watch(replica, settings_dict, self._answered)

    def _answered(self, replica: str, lag_s: float | None) -> None:
        """Called by the measuring thread: a refused replica that answers gets reads again."""
        since = self._dead.get(replica)
        measurer = self._watching_dead.get(replica)
        if since is None or measurer is None or lag_s is None or measurer.started < since:
            return  # no answer yet, or an answer to a question asked before it refused
        with self._cache_lock:
            self._dead.pop(replica, None)
            self._watching_dead.pop(replica, None)
        measurer.unsubscribe(self._answered)
        logger.warning("replica %s answers again: it gets reads", replica)
        if replica in self._limits:
            # Its lag decides, as before it refused.
            self._measured(replica, lag_s)
        self._refresh(self._families[self._replica_of[replica]])

    def _runtime_added(self, *, alias: str, replica_of: str | None, **_: Any) -> None:
        """A runtime replica: its primary's reads spread over it too, with the same rules."""
        if replica_of is None or alias in self._replica_of:
            return
        self._entries[alias] = connections.settings[alias]
        with self._cache_lock:
            self._replica_of[alias] = replica_of
            family = self._families.get(replica_of)
            replicas = (*(family.replicas if family is not None else ()), alias)
            self._families[replica_of] = _Family(replica_of, replicas)
        limit = (runtime_values(alias) or {}).get("max_replica_lag")
        if limit is not None:
            self._limits[alias] = limit / 1000
            self._lags[alias] = lag.watch(alias, _with_django_defaults(self._entries[alias]), self._measured)
        self._refresh(self._families[replica_of])

    def _runtime_removed(self, *, alias: str, **_: Any) -> None:
        primary = self._replica_of.get(alias)
        if primary is None:
            return
        measurers = [m for m in (self._lags.pop(alias, None), self._watching_dead.pop(alias, None)) if m]
        for measurer in measurers:
            measurer.unsubscribe(self._measured)
            measurer.unsubscribe(self._answered)
        with self._cache_lock:
            del self._replica_of[alias]
            self._limits.pop(alias, None)
            self._dead.pop(alias, None)
            self._fit.discard(alias)
            self._entries.pop(alias, None)
            # A family without replicas reads from its primary; kept (not deleted) so that a
            # request that chose the removed replica finds it unfit rather than no family at all.
            left = tuple(name for name in self._families[primary].replicas if name != alias)
            self._families[primary] = _Family(primary, left)
        self._refresh(self._families[primary])

    @property
    def max_replica_lags(self) -> dict[str, float]:
        """Each replica with a `max_replica_lag`, and that limit in seconds."""
        return dict(self._limits)

    def replica_lag(self, alias: str) -> float | None:
        """The lag of a replica with a max_replica_lag as last measured (seconds), else None."""
        measurer = self._lags.get(alias)
        return measurer.lag_s if measurer is not None else None

    def stop_measuring(self) -> None:
        """Stop listening to the lag measurements; a measurer nobody listens to stops."""
        for measurer in self._lags.values():
            measurer.unsubscribe(self._measured)
        for measurer in list(self._watching_dead.values()):
            measurer.unsubscribe(self._answered)
        self._fit.clear()
        for family in self._families.values():
            self._refresh(family)

    def _check_route(self, key: object, alias: object, where: str, aliases: tuple[str, ...]) -> None:
        if not isinstance(key, str) or not _ROUTE_KEY.fullmatch(key):
            raise DbConfigError(
                f'{where}: {key!r} is not a route key. Use an app label ("reports") or '
                'app_label.ModelName ("events.PageView").'
            )
        if not isinstance(alias, str) or alias not in aliases:
            raise DbConfigError(
                f'{where}: route "{key}" goes to {alias!r}, which is not an alias in DATABASES. '
                f"Known aliases: {one_of(aliases)}." + did_you_mean(str(alias), aliases)
            )
        if alias in self._replica_of:
            raise DbConfigError(
                f'{where}: route "{key}" goes to the replica "{alias}". Route to its primary '
                f'"{self._replica_of[alias]}": reads are sent to replicas automatically.'
            )

    def __repr__(self) -> str:
        routes = {**self._app_routes, **self._model_routes}
        replicas = {
            primary: tuple(sorted(r for r, p in self._replica_of.items() if p == primary))
            for primary in self._families
        }
        return f"DatabaseRouter(routes={routes!r}, replicas={replicas!r})"

    def _learn(self, model: type) -> tuple[str, _Family | None]:
        meta = model._meta  # type: ignore[attr-defined]
        alias = self._model_routes.get(meta.label_lower) or self._app_routes.get(meta.app_label)
        alias = alias or DEFAULT_DB_ALIAS
        with self._cache_lock:
            entry = (alias, self._families.get(alias))
            self._cache[model] = entry
        return entry

    def route(self, model: type) -> str:
        """The alias `model` belongs to (its primary), ignoring replicas and pins."""
        return (self._cache.get(model) or self._learn(model))[0]

    def db_for_read(self, model: type, **hints: Any) -> str:
        """A replica of the model's alias; the alias when pinned, in a transaction, or without replicas.

        The first read of a primary in a request or task picks a fit replica that
        answers; later reads of that request or task use it while it stays fit.
        """
        try:
            alias, family = self._cache[model]
        except KeyError:
            alias, family = self._learn(model)
        state = _state.get()
        if state is not None:
            # The common case once a request has read: its replica, still fit, no transaction open.
            replica = state.reads.get(alias)
            if replica is not None and replica in family.fit and not OPEN_TRANSACTIONS:  # type: ignore[union-attr]
                return replica
            if state.forced is not None:
                alias = state.forced
                family = self._families.get(alias)
            if state.pin_all or alias in state.pinned:
                return alias
        if family is None:
            return alias
        # An atomic block open on the primary in this thread: read its own snapshot there.
        if OPEN_TRANSACTIONS and alias in OPEN_TRANSACTIONS.get(threading.get_ident(), ()):
            return alias
        if state is not None:
            replica = state.chosen.get(alias)
            if replica is not None and replica in family.fit:
                return replica
        return self._choose(alias, family, state)

    def _choose(self, alias: str, family: _Family, state: _State | None) -> str:
        """The replica this request or task reads `alias` from: the next fit one that answers."""
        for _ in range(len(family.replicas)):
            replica = family.pick()
            if replica == alias:
                break  # no replica is fit: the primary
            answer = liveness.answers(replica)
            if answer is None:
                return replica  # not checkable here (an event loop): not remembered either
            if answer.ok:
                current = state or _EMPTY
                _state.set(replace(current, chosen={**current.chosen, alias: replica}))
                return replica
            self._refused(replica, answer.error)
        return alias

    def db_for_write(self, model: type, **hints: Any) -> str:
        """The model's alias; later reads of it in this request or task go there too."""
        state = _state.get()
        if state is not None and state.forced is not None:
            alias = state.forced
        else:
            alias = (self._cache.get(model) or self._learn(model))[0]
        if alias in self._families and (state is None or alias not in state.written):
            current = state or _EMPTY
            _state.set(replace(current, written=current.written | {alias}, pinned=current.pinned | {alias}))
        return alias

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        """True within one alias and its replicas; otherwise no opinion (Django then refuses)."""
        if self._family(obj1) == self._family(obj2):
            return True
        return None

    def _family(self, obj: Any) -> str:
        alias = obj._state.db or self.route(type(obj))
        return self._replica_of.get(alias, alias)

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        """A model migrates on its own alias only, never on a replica.

        A runtime alias (add_database) migrates the models of the alias it is like
        (`default` without like=): a tenant database gets the tables of its template.
        """
        if db in self._replica_of:
            return False
        if db not in self._aliases:
            db = migrates_like(db)
        if db in self._replica_of:
            return False
        alias = None
        if model_name is not None:
            alias = self._model_routes.get(f"{app_label}.{model_name}".lower())
        return db == (alias or self._app_routes.get(app_label) or DEFAULT_DB_ALIAS)


_ROUTE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


def _with_django_defaults(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A DATABASES entry with the keys Django fills in (what a DatabaseWrapper expects)."""

    filled: dict[str, Any] = connections.configure_settings({DEFAULT_DB_ALIAS: copy.deepcopy(dict(entry))})[
        DEFAULT_DB_ALIAS
    ]
    return filled


def _mirrors(databases: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Replicas from hand-written DATABASES: an alias whose TEST.MIRROR names its primary."""
    replicas: dict[str, list[str]] = {}
    for alias, entry in databases.items():
        mirror = ((entry or {}).get("TEST") or {}).get("MIRROR")
        if mirror:
            replicas.setdefault(mirror, []).append(alias)
    return {primary: tuple(names) for primary, names in replicas.items()}


# --------------------------------------------------------------------------- signals


def connect_signals() -> None:
    """Clear write pins at each request's start and end; guard read-only connections.

    Idempotent. The router calls it when Django creates it; call it from an
    AppConfig.ready() to guard connections opened before the first routed query.
    """

    request_started.connect(reset_pins, dispatch_uid="django_dbconfig.routers.request_started")
    request_finished.connect(reset_pins, dispatch_uid="django_dbconfig.routers.request_finished")
    connection_created.connect(
        on_connection_created, dispatch_uid="django_dbconfig.routers.connection_created"
    )
    connection_created.connect(
        transactions.on_connection_created, dispatch_uid="django_dbconfig.routers.transactions"
    )
