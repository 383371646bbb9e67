"""Server families, registered in one place.

Each family is a folder: `settings.py` renders and validates its keys (pure, read by
`build_databases()`), `base.py` is its Django engine, `client.py` its dbshell, `probe.py`
what dbcheck and the health endpoint ask its servers. A new family is a new folder whose
classes subclass an existing family's, added to `BACKENDS` and `FAMILIES` below, or, for an
engine that stands in for another project's on the same servers (GeoDjango's PostGIS and
MySQL engines), to `ENGINES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from django_dbconfig.backends.base.settings import Backend, RenderContext
from django_dbconfig.backends.mysql.settings import MariaDB, MySQL
from django_dbconfig.backends.mysql_gis.settings import MariaDBGIS, MySQLGIS
from django_dbconfig.backends.postgis.settings import PostGIS
from django_dbconfig.backends.postgresql.settings import PostgreSQL
from django_dbconfig.backends.sqlite.settings import SQLite

BACKENDS: dict[str, Backend] = {
    backend.name: backend for backend in (PostgreSQL(), MySQL(), MariaDB(), SQLite())
}
# This project's engines for other engines' users, by backend and by each value of the
# `engine` key that selects one (a short name, the other engine's dotted path, ours).
ENGINES: dict[tuple[str, str], Backend] = {
    (backend.name, name): backend
    for backend in (PostGIS(), MySQLGIS(), MariaDBGIS())
    for name in backend.engine_names
}

# Django's vendor families, and the words of an ENGINE path that belong to each.
FAMILIES: dict[str, tuple[str, ...]] = {
    "postgresql": ("postgres", "postgis", "psycopg"),
    "mysql": ("mysql", "mariadb"),
    "sqlite": ("sqlite", "spatialite"),
}

DEFAULT_CONNECT_TIMEOUT = 5.0

__all__ = [
    "BACKENDS",
    "ENGINES",
    "FAMILIES",
    "Backend",
    "RenderContext",
    "backend_for",
    "connect_timeout",
    "engine_short_names",
    "families_taking",
    "is_ours",
    "probe_module",
    "vendor_of",
]


def backend_for(backend: str, engine: str | None) -> Backend:
    """The renderer of an alias: its backend's, or the one of this project's engines that
    `engine` selects (`postgis` on PostgreSQL)."""
    return ENGINES.get((backend, engine or ""), BACKENDS[backend])


def engine_short_names(backend: str | None = None) -> dict[str, str]:
    """The short names the `engine` key accepts (of one backend, or all), with their backend.

    A name shared by two backends (`mysql_gis`) goes with the first registered (`mysql`).
    """
    names: dict[str, str] = {}
    for key, name in ENGINES:
        if "." not in name and (backend is None or key == backend):
            names.setdefault(name, key)
    return names


def is_ours(engine: str) -> bool:
    """Whether an ENGINE path loads one of this project's engines (today's or 0.1's paths)."""
    return engine.startswith("django_dbconfig.")


def families_taking(option: str) -> tuple[str, ...]:
    """The display names of the families whose driver takes `option` in OPTIONS, each once."""
    return tuple(dict.fromkeys(b.display for b in BACKENDS.values() if option in b.driver_options))


def vendor_of(entry: Mapping[str, Any]) -> str:
    """Django's vendor family of a DATABASES entry, from its ENGINE, without a connection."""
    engine = str(entry.get("ENGINE", ""))
    for vendor, words in FAMILIES.items():
        if any(word in engine for word in words):
            return vendor
    return "unknown"


def connect_timeout(vendor: str, entry: Mapping[str, Any]) -> float:
    """The alias's own connect timeout in seconds (OPTIONS.connect_timeout), else 5."""
    options = entry.get("OPTIONS") or {}
    value = options.get("connect_timeout") if vendor != "sqlite" else options.get("timeout")
    try:
        seconds = float(value) if value is not None else DEFAULT_CONNECT_TIMEOUT
    except (TypeError, ValueError):
        seconds = DEFAULT_CONNECT_TIMEOUT
    return seconds if seconds > 0 else DEFAULT_CONNECT_TIMEOUT


def probe_module(vendor: str) -> ModuleType:
    """The family's `probe.py`: what dbcheck and the health endpoint ask its servers.

    Imported by name, as Django imports an ENGINE: settings.py, which reads this
    package for `BACKENDS`, never loads a probe.
    """
    if vendor not in FAMILIES:
        raise LookupError(f"no probe for the vendor {vendor!r}")
    return importlib.import_module(f"django_dbconfig.backends.{vendor}.probe")
