"""Runtime databases: aliases added to and removed from django.db.connections while the project runs.

For multi-tenant projects: a tenant's database becomes an alias validated like
one of dbconfig.json's, rendered with Django's own defaults, usable with
`.using()`, `use_database()`, transactions and `migrate --database`; removing it
ends its server sessions in every thread and forgets its pool. A runtime alias may
be a replica of another alias (`replica_of=`): it inherits its primary's keys as a
configured replica does, and the router hears of it through `database_added`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
from django.conf import settings
from django.db import connections
from django.dispatch import Signal

from django_dbconfig.backends import RenderContext
from django_dbconfig.conf.config import effective_values, last_config, render_alias
from django_dbconfig.conf.inherit import NOT_INHERITED_BY_REPLICAS, inherit, with_replica_defaults
from django_dbconfig.conf.layer import Layer, Origin, Value, alias_values, check_alias
from django_dbconfig.conf.merge import merge
from django_dbconfig.core.errors import DbConfigError, did_you_mean, one_of
from django_dbconfig.core.keys import CONNECTION_KEYS
from django_dbconfig.core.types import DatabaseSettings
from django_dbconfig.runtime import tracking

logger = logging.getLogger(__name__)

# Keys of the `like=` alias that a runtime alias does not take: the URL is already
# expanded into its parts, and whether it is a replica is decided apart (_replica_of).
NOT_INHERITED = frozenset({"url", "replica_of"})
# The rank of the given keys: above every layer of the configuration.
RANK = 7


@dataclass(frozen=True, repr=False)
class RuntimeAlias:
    """What add_database() registered: the entry, its effective values, and the alias it is like.

    No secret in its repr.
    """

    entry: DatabaseSettings
    effective: Mapping[str, Value]
    like: str | None
    replica_of: str | None = None

    def __repr__(self) -> str:
        return (
            f"RuntimeAlias(engine={self.entry.get('ENGINE')!r}, like={self.like!r}, "
            f"replica_of={self.replica_of!r})"
        )


_lock = threading.Lock()
_runtime: dict[str, RuntimeAlias] = {}
# primary -> its runtime replicas: removing a primary asks without visiting every alias.
_replicas: dict[str, set[str]] = {}

# The most runtime aliases there were since the registries were last rebuilt (_compact).
_peak = 0
# Below this many, a registry's table is a few kilobytes: not worth a copy.
COMPACT_FROM = 256

# Sent with `alias=` once a runtime alias is removed, for what keeps state per alias.
database_removed = Signal()
# Sent with `alias=` and `replica_of=` (None for a primary) once a runtime alias is added.
database_added = Signal()


def add_database(
    alias: str, keys: Mapping[str, Any], *, like: str | None = None, replica_of: str | None = None
) -> None:
    """Validate `keys` like a dbconfig.json alias and register `alias` in django.db.connections.

    With `like`, the alias starts from every effective key of that alias (host and
    port included; user and password as a pair) and `keys` win. With `replica_of`
    (or `like=` a replica), it is a read replica of that primary: it inherits the
    primary's keys but host and port, is read-only, and the router spreads reads
    over it. The config's `defaults` apply. Raises DbConfigError for a bad key or
    an alias that exists.
    """

    global _peak  # noqa: PLW0603 - the registries' high mark, under _lock

    label = f'add_database("{alias}")'
    check_alias(alias, Origin(label))
    try:
        effective, entry, primary = _render(alias, keys, like, replica_of, label)
    except DbConfigError:
        raise
    except Exception as exc:  # the contract: nothing but DbConfigError escapes
        raise DbConfigError(
            f"{label}: unexpected {type(exc).__name__} while reading the keys. "
            "Please report this to django-dbconfig with the traceback."
        ) from None
    tracking.install()
    with _lock:
        current = connections.settings
        if alias in current:
            fix = (
                f'Choose another name, or remove_database("{alias}") first.'
                if alias in _runtime
                else "It is in DATABASES: choose another name."
            )
            raise DbConfigError(f'{label}: the alias "{alias}" already exists. {fix}')
        tracking.watch(alias)
        _runtime[alias] = RuntimeAlias(entry, effective, like, primary)
        if primary is not None:
            _replicas.setdefault(primary, set()).add(alias)
        _peak = max(_peak, len(_runtime))
        # In place (tracking.install() gave connections a dict of its own): a copy per call
        # would make the 10,000th alias cost more than the first. Iterating `connections`
        # iterates a snapshot, so a thread iterating at a request's end is not disturbed.
        current[alias] = entry
    logger.info(
        "runtime database %r added (%s)%s",
        alias,
        entry.get("ENGINE"),
        f", a replica of {primary!r}" if primary else "",
    )
    database_added.send(sender=add_database, alias=alias, replica_of=primary)


def remove_database(alias: str) -> None:
    """Close `alias`'s server sessions in every thread, forget its pool, and free the name."""

    label = f'remove_database("{alias}")'
    with _lock:
        current = connections.settings
        if alias not in _runtime:
            if alias in current:
                raise DbConfigError(
                    f'{label}: "{alias}" is in DATABASES, not a runtime database: only aliases '
                    "added with add_database() or runtime_database() can be removed."
                )
            known = sorted(_runtime)
            listed = f"Runtime databases: {one_of(known)}." if known else "There are no runtime databases."
            raise DbConfigError(
                f'{label}: there is no runtime database "{alias}". {listed}' + did_you_mean(alias, known)
            )
        replicas = sorted(_replicas.get(alias, ()))
        if replicas:
            raise DbConfigError(
                f'{label}: "{alias}" has runtime replicas: {one_of(replicas)}. Remove them first '
                "(remove_database() each), then the primary."
            )
        removed = _runtime.pop(alias)
        _replicas.pop(alias, None)
        if removed.replica_of is not None:
            siblings = _replicas.get(removed.replica_of)
            if siblings is not None:
                siblings.discard(alias)
                if not siblings:
                    del _replicas[removed.replica_of]
        del current[alias]
        # After the alias left the settings: a thread making an object meanwhile drops it.
        made = tracking.take(alias)
        compacted = _compact()
    # Every thread's object is gone from its storage; their server sessions end here.
    tracking.close_everywhere(made)
    if compacted:
        # Most aliases are gone: what their connections took is free in the C allocator.
        tracking.give_back_memory()
    tracking.forget_pool(alias, str(removed.entry.get("ENGINE", "")))
    tracking.forget_alias(alias)
    # The health endpoint's cached answer for the alias goes too (health/status.py).
    database_removed.send(sender=remove_database, alias=alias)
    logger.info("runtime database %r removed; %d connection object(s) closed", alias, len(made))


def _compact() -> bool:
    """Rebuild the registries at their present size once three quarters of their peak are gone.

    A dict never shrinks on deletion: 10,000 tenants that came and went would keep tables
    for 10,000 in each registry. Rebuilding costs a copy of what is left (a quarter of the
    peak at most), paid once per three quarters of the peak removed: removal stays as cheap
    at the 10,000th alias as at the first. Call under _lock.
    """
    global _peak, _runtime, _replicas  # noqa: PLW0603 - replaced whole under _lock, read without it

    if _peak < COMPACT_FROM or len(_runtime) > _peak // 4:
        return False
    _runtime = dict(_runtime)
    _replicas = {primary: set(replicas) for primary, replicas in _replicas.items()}
    tracking.compact()
    _peak = len(_runtime)
    return True


@contextlib.contextmanager
def runtime_database(keys: Mapping[str, Any], *, like: str | None = None) -> Iterator[str]:
    """A fresh runtime alias for the block; removed (every session closed) at its end."""
    alias = f"runtime_{uuid.uuid4().hex[:16]}"
    add_database(alias, keys, like=like)
    try:
        yield alias
    finally:
        remove_database(alias)


def runtime_aliases() -> tuple[str, ...]:
    """The aliases added at runtime and not removed yet."""
    return tuple(_runtime)


def is_runtime(alias: str) -> bool:
    """Whether `alias` was added at runtime (and not removed yet)."""
    return alias in _runtime


def runtime_replicas() -> dict[str, str]:
    """Each runtime replica and its primary."""
    return {replica: primary for primary, replicas in _replicas.items() for replica in replicas}


def runtime_values(alias: str) -> dict[str, Any] | None:
    """The effective typed values of a runtime alias (as DatabaseConfig.values()), or None."""
    found = _runtime.get(alias)
    return {key: value.value for key, value in found.effective.items()} if found is not None else None


def migrates_like(alias: str) -> str:
    """The alias whose models a runtime alias migrates: its `like=`, else `default`."""
    found = _runtime.get(alias)
    if found is None:
        return alias
    return migrates_like(found.like) if found.like else "default"


# --------------------------------------------------------------------------- rendering


def _render(
    alias: str, keys: Mapping[str, Any], like: str | None, replica_of: str | None, label: str
) -> tuple[dict[str, Value], DatabaseSettings, str | None]:

    if not isinstance(keys, Mapping):
        raise DbConfigError(f"{label}: expected the alias's keys as a mapping, got {type(keys).__name__}.")
    config = last_config()
    if replica_of is not None:
        keys = {**keys, "replica_of": replica_of}
    given = alias_values(keys, lambda path: Origin(label, path), "", RANK, alias=alias)
    primary = _primary_of(alias, given, like, label)
    defaults = Layer("defaults", defaults=dict(config.defaults) if config is not None else {})
    # The given keys over the config's defaults, a URL expanded into its parts.
    values = merge([defaults, Layer(label, databases={alias: given})]).databases[alias]
    if like is not None:
        parent = _like_values(like, label)
        skip = set(NOT_INHERITED)
        chosen = values.get("backend")
        if "url" in given or (chosen is not None and chosen.value != parent["backend"].value):
            # Another server altogether: as in a layer, a URL or backend replaces the connection parts.
            skip |= CONNECTION_KEYS
        if "pool" in given or "conn_max_age" in given:
            # How connections are kept is one choice: the given one replaces the other alias's.
            skip |= {"pool", "conn_max_age"}
        values = inherit(parent, values, parent_alias=like, not_inherited=skip)
    if primary is not None:
        # As a configured replica: the primary's keys but where its server is, read-only.
        values = {**values, "replica_of": Value(primary, Origin(label, "replica_of"), RANK)}
        values = with_replica_defaults(
            inherit(
                _like_values(primary, label),
                values,
                parent_alias=primary,
                not_inherited=NOT_INHERITED_BY_REPLICAS,
            )
        )
    # The configured aliases suffice for the did-you-mean of a missing backend (not 10,000 tenants).
    backend, effective = effective_values(alias, values, (*settings.DATABASES, alias), {})
    base_dir = config.base_dir if config is not None else Path.cwd()
    ctx = RenderContext(alias=alias, base_dir=base_dir, django_version=(django.VERSION[0], django.VERSION[1]))
    rendered = backend.for_runtime_alias(render_alias(backend, effective, ctx))
    # Django fills its defaults (TIME_ZONE, TEST, ...) only into the DATABASES it read at
    # first access: fill them with its own code, so the entry is like any other.
    filled: DatabaseSettings = connections.configure_settings({"default": rendered})["default"]
    return effective, filled, primary


def _primary_of(alias: str, given: Mapping[str, Value], like: str | None, label: str) -> str | None:
    """The primary a runtime alias replicates: its replica_of, or that of the replica it is like."""
    if "replica_of" in given:
        primary = given["replica_of"]
        name, where = primary.value, primary.origin
    elif like is not None and _replica_of(like) is not None:
        name, where = _replica_of(like), Origin(label, "like")
    else:
        return None
    if not isinstance(name, str) or name not in connections.settings:
        known = list(connections.settings)
        raise DbConfigError(
            f'{where}: replica_of names "{name}", which is not an alias. Known aliases: {one_of(known)}.'
            + did_you_mean(str(name), known)
        )
    if name == alias:
        raise DbConfigError(f"{where}: an alias cannot be a replica of itself.")
    if _replica_of(name) is not None:
        raise DbConfigError(f'{where}: "{name}" is itself a replica. Point replica_of at its primary.')
    return name


def _replica_of(alias: str) -> str | None:
    """The primary of a configured or runtime replica, else None."""
    if alias in _runtime:
        return _runtime[alias].replica_of
    config = last_config()
    if config is not None:
        for primary, replicas in config.replicas.items():
            if alias in replicas:
                return primary
    return None


def _like_values(like: str, label: str) -> Mapping[str, Value]:

    if like in _runtime:
        return _runtime[like].effective
    config = last_config()
    if config is not None and like in config.aliases:
        return config.effective(like)
    known = [*(config.aliases if config is not None else ()), *_runtime]
    if like in connections.settings:
        raise DbConfigError(
            f'{label}: like="{like}" names an alias written by hand in DATABASES: like= takes the '
            "keys of an alias built by build_databases() or add_database(). Give the keys instead."
        )
    listed = f"Known aliases: {one_of(known)}." if known else "No alias was built by build_databases()."
    raise DbConfigError(f'{label}: like="{like}" is not an alias. {listed}' + did_you_mean(like, known))
