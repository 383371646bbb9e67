"""Runtime databases: aliases added to and removed from django.db.connections while the project runs.

For multi-tenant projects: a tenant's database becomes an alias validated like
one of dbconfig.json's, rendered with Django's own defaults, usable with
`.using()`, `use_database()`, transactions and `migrate --database`; removing it
ends its server sessions in every thread and forgets its pool.
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
from django.db import connections
from django.dispatch import Signal

from django_dbconfig.backends import RenderContext
from django_dbconfig.conf.config import effective_values, last_config, render_alias
from django_dbconfig.conf.inherit import inherit
from django_dbconfig.conf.layer import Layer, Origin, Value, alias_values, check_alias
from django_dbconfig.conf.merge import merge
from django_dbconfig.core.errors import DbConfigError, did_you_mean, one_of
from django_dbconfig.core.keys import CONNECTION_KEYS
from django_dbconfig.core.types import DatabaseSettings
from django_dbconfig.runtime import tracking

logger = logging.getLogger(__name__)

# Keys of the `like=` alias that a runtime alias does not take: the URL is already
# expanded into its parts, and a runtime alias is never a replica in routing.
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

    def __repr__(self) -> str:
        return f"RuntimeAlias(engine={self.entry.get('ENGINE')!r}, like={self.like!r})"


_lock = threading.Lock()
_runtime: dict[str, RuntimeAlias] = {}

# Sent with `alias=` once a runtime alias is removed, for what keeps state per alias.
database_removed = Signal()


def add_database(alias: str, keys: Mapping[str, Any], *, like: str | None = None) -> None:
    """Validate `keys` like a dbconfig.json alias and register `alias` in django.db.connections.

    With `like`, the alias starts from every effective key of that alias (host and
    port included; user and password as a pair) and `keys` win. The config's
    `defaults` apply. Raises DbConfigError for a bad key or an alias that exists.
    """

    label = f'add_database("{alias}")'
    check_alias(alias, Origin(label))
    try:
        effective, entry = _render(alias, keys, like, label)
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
        _runtime[alias] = RuntimeAlias(entry, effective, like)
        # Copy on write: other threads may be iterating connections.settings
        # (close_old_connections at a request's end) while this one adds.
        connections.__dict__["settings"] = {**current, alias: entry}
    logger.info("runtime database %r added (%s)", alias, entry.get("ENGINE"))


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
        removed = _runtime.pop(alias)
        connections.__dict__["settings"] = {name: entry for name, entry in current.items() if name != alias}
        made = tracking.take(alias, current=_runtime)
    tracking.close_everywhere(made)
    # This thread's object goes now; other threads' are replaced on their next access.
    with contextlib.suppress(AttributeError):
        delattr(connections._connections, alias)  # type: ignore[attr-defined]
    tracking.forget_pool(alias, str(removed.entry.get("ENGINE", "")))
    # The health endpoint's prober and cached answer for the alias go too (health/status.py).
    database_removed.send(sender=remove_database, alias=alias)
    logger.info("runtime database %r removed; %d connection object(s) closed", alias, len(made))


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
    alias: str, keys: Mapping[str, Any], like: str | None, label: str
) -> tuple[dict[str, Value], DatabaseSettings]:

    if not isinstance(keys, Mapping):
        raise DbConfigError(f"{label}: expected the alias's keys as a mapping, got {type(keys).__name__}.")
    config = last_config()
    given = alias_values(keys, lambda path: Origin(label, path), "", RANK, alias=alias)
    if "replica_of" in given:
        raise DbConfigError(
            f"{given['replica_of'].origin}: a runtime alias cannot be a replica: the router's "
            'replicas are fixed when it starts. Use like="..." to take another alias\'s keys.'
        )
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
    backend, effective = effective_values(alias, values, (*connections.settings, alias), {})
    base_dir = config.base_dir if config is not None else Path.cwd()
    ctx = RenderContext(alias=alias, base_dir=base_dir, django_version=(django.VERSION[0], django.VERSION[1]))
    rendered = render_alias(backend, effective, ctx)
    # Django fills its defaults (TIME_ZONE, TEST, ...) only into the DATABASES it read at
    # first access: fill them with its own code, so the entry is like any other.
    filled: DatabaseSettings = connections.configure_settings({"default": rendered})["default"]
    return effective, filled


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
