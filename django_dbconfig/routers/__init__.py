"""DatabaseRouter: models to aliases, reads to replicas, reads pinned to the primary after a write.

Per-request state (which primaries this request or task has written to, and the
`pin_to_primary()` / `use_database()` blocks) lives in one context variable, so
threads and asyncio tasks never see each other's pins. The write pins are cleared
when a request starts and when it finishes (Django's request signals, connected
when the router is created).

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created

from django_dbconfig.conf.config import last_config
from django_dbconfig.core.errors import DbConfigError, did_you_mean, one_of
from django_dbconfig.routers import lag
from django_dbconfig.routers.readonly import (
    ReadOnlyDatabaseError,
    ReadOnlyInternalError,
    ReadOnlyOperationalError,
    guard_open_connections,
    on_connection_created,
)
from django_dbconfig.runtime.databases import migrates_like

logger = logging.getLogger(__name__)

__all__ = [
    "DatabaseRouter",
    "ReadOnlyDatabaseError",
    "ReadOnlyInternalError",
    "ReadOnlyOperationalError",
    "connect_signals",
    "pin_to_primary",
    "reset_pins",
    "use_database",
]


@dataclass(frozen=True, slots=True)
class _State:
    """What the current request or task has asked for. Immutable: a change is a new `set()`."""

    forced: str | None = None  # use_database(alias)
    pin_all: bool = False  # pin_to_primary()
    written: frozenset[str] = field(default_factory=frozenset)  # primaries written to


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
    """Forget the writes of this request or task: reads go to replicas again.

    Connected to `request_started` and `request_finished`. Call it yourself at the
    end of a unit of work outside a request (a task-queue job, a long-lived thread).
    Open `pin_to_primary()` and `use_database()` blocks are left as they are.
    """
    state = _state.get()
    if state is not None and state.written:
        _set(replace(state, written=frozenset()))


_UNSET = object()


class _Family:
    """A primary's replicas that may serve reads now: `pick()` returns the next one (or the primary)."""

    __slots__ = ("pick", "primary", "replicas")

    def __init__(self, primary: str, replicas: tuple[str, ...]) -> None:
        self.primary = primary
        self.replicas = replicas
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
        # model class -> (alias, the replica picker or None); filled on first use of each model,
        # emptied when a replica's fitness changes (under the lock, so no stale picker is cached).
        self._cache: dict[type, tuple[str, Callable[[], str] | None]] = {}
        self._cache_lock = threading.Lock()
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
        fit = tuple(name for name in family.replicas if name not in self._limits or name in self._fit)
        with self._cache_lock:
            family.pick = _picker(family.primary, fit)
            self._cache = {}

    def replica_lag(self, alias: str) -> float | None:
        """The lag of a replica with a max_replica_lag as last measured (seconds), else None."""
        measurer = self._lags.get(alias)
        return measurer.lag_s if measurer is not None else None

    def stop_measuring(self) -> None:
        """Stop listening to the lag measurements; a measurer nobody listens to stops."""
        for measurer in self._lags.values():
            measurer.unsubscribe(self._measured)
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

    def _learn(self, model: type) -> tuple[str, Callable[[], str] | None]:
        meta = model._meta  # type: ignore[attr-defined]
        alias = self._model_routes.get(meta.label_lower) or self._app_routes.get(meta.app_label)
        alias = alias or DEFAULT_DB_ALIAS
        with self._cache_lock:
            family = self._families.get(alias)
            entry = (alias, family.pick if family is not None else None)
            self._cache[model] = entry
        return entry

    def route(self, model: type) -> str:
        """The alias `model` belongs to (its primary), ignoring replicas and pins."""
        return (self._cache.get(model) or self._learn(model))[0]

    def db_for_read(self, model: type, **hints: Any) -> str:
        """A replica of the model's alias, or the alias itself when pinned or without replicas."""
        try:
            alias, pick = self._cache[model]
        except KeyError:
            alias, pick = self._learn(model)
        state = _state.get()
        if state is not None:
            if state.forced is not None:
                return state.forced
            if state.pin_all or alias in state.written:
                return alias
        if pick is None:
            return alias
        return pick()

    def db_for_write(self, model: type, **hints: Any) -> str:
        """The model's alias; later reads of it in this request or task go there too."""
        state = _state.get()
        if state is not None and state.forced is not None:
            alias = state.forced
        else:
            alias = (self._cache.get(model) or self._learn(model))[0]
        if alias in self._families and (state is None or alias not in state.written):
            current = state or _EMPTY
            _state.set(replace(current, written=current.written | {alias}))
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
