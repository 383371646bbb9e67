"""Layered, provable multi-database configuration for Django.

The names below are imported on first use, so `import django_dbconfig` (as Django
does for INSTALLED_APPS) costs next to nothing; `build_databases` loads the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import DatabaseConfig, ExplainRow, build_databases, load_config, override
    from .errors import DbConfigError
    from .runtime import add_database, check_databases, remove_database, runtime_database

__all__ = [
    "DatabaseConfig",
    "DbConfigError",
    "ExplainRow",
    "add_database",
    "build_databases",
    "check_databases",
    "load_config",
    "override",
    "remove_database",
    "runtime_database",
]
__version__ = "0.1.0"

# Each public name and the module that defines it.
_HOMES = {
    "DatabaseConfig": "config",
    "ExplainRow": "config",
    "build_databases": "config",
    "load_config": "config",
    "override": "config",
    "DbConfigError": "errors",
    "add_database": "runtime",
    "check_databases": "runtime",
    "remove_database": "runtime",
    "runtime_database": "runtime",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
