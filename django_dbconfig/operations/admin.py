"""Administrative connections: `migrate`, `dbcheck --create-schemas` and `--apply-settings`.

An alias's `migrate` keys (typically an owner's user and password in `.secrets/`)
replace its own keys for schema changes, so that the role serving requests needs no
DDL rights. The administrative connection is never read-only: a `read_only` alias
migrates without being edited. None of this is ever in `DATABASES`: requests never
see these credentials.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import django
from django.db import connections

from django_dbconfig.backends import RenderContext, backend_for
from django_dbconfig.conf.config import last_config
from django_dbconfig.core.types import DatabaseSettings

logger = logging.getLogger(__name__)

# Keys that make no sense on a one-off administrative connection.
_NOT_FOR_ADMIN = ("read_only", "pool")


def admin_settings(alias: str) -> DatabaseSettings | None:
    """The DATABASES entry for schema changes on `alias`: its `migrate` keys over its own.

    Read-only mode and the pool are dropped. None when the alias was not built by
    `build_databases()`, or when DATABASES no longer holds what was built for it
    (a test database, an entry replaced in settings.py): then its own entry is used.
    """
    config = last_config()
    if config is None or alias not in config.aliases or alias not in connections.settings:
        return None
    if not config.holds(alias, connections.settings[alias]):
        logger.debug("%s: DATABASES differs from the built config; migrate keys not used", alias)
        return None
    values = config.values(alias)
    # The alias's own renderer: `engine: postgis` renders this project's PostGIS ENGINE.
    backend = backend_for(config.vendors[alias], values.get("engine"))
    own = {key: value for key, value in values.items() if not key.startswith("migrate.")}
    migrate = {
        key.removeprefix("migrate."): value
        for key, value in values.items()
        if key.startswith("migrate.") and key.removeprefix("migrate.") in backend.keys
    }
    if "user" in migrate and "password" not in migrate:
        own.pop("password", None)  # user and password travel as a pair
    for key in _NOT_FOR_ADMIN:
        own.pop(key, None)
    context = RenderContext(
        alias=alias, base_dir=config.base_dir, django_version=(django.VERSION[0], django.VERSION[1])
    )
    settings = backend.render({**own, **migrate}, context)
    settings["CONN_MAX_AGE"] = 0
    return settings


def over(entry: Mapping[str, Any], admin: DatabaseSettings) -> dict[str, Any]:
    """A full DATABASES entry (Django's defaults filled in) with the admin settings in force."""
    merged: dict[str, Any] = {**entry, **admin, "TEST": entry.get("TEST", {})}
    for key in ("USER", "PASSWORD", "HOST", "PORT", "OPTIONS"):
        if key not in admin:  # dropped for the admin connection: not the alias's own either
            merged[key] = {} if key == "OPTIONS" else ""
    return merged


def has_migrate_keys(alias: str) -> bool:
    """Whether the configuration gives `alias` credentials of its own for migrate."""
    config = last_config()
    return (
        config is not None
        and alias in config.aliases
        and any(key.startswith("migrate.") for key in config.values(alias))
    )


@contextlib.contextmanager
def admin_connection(alias: str) -> Iterator[Any]:
    """Switch `django.db.connections[alias]` (this thread's) to its admin settings for the block.

    The connection is closed on the way in and out, so that it reconnects with the
    settings in force; the alias's own settings are back when the block ends.
    """
    settings = admin_settings(alias)
    connection = connections[alias]
    if settings is None or connection.in_atomic_block:
        # Closing the connection would break the caller's transaction: keep it as it is.
        yield connection
        return
    saved = connection.settings_dict
    admin = over(saved, settings)
    connection.close()
    connection.settings_dict = admin
    logger.info(
        "%s: connecting as %r for schema changes%s",
        alias,
        admin.get("USER") or "(default user)",
        " (migrate keys)" if has_migrate_keys(alias) else "",
    )
    try:
        yield connection
    finally:
        connection.close()
        connection.settings_dict = saved
