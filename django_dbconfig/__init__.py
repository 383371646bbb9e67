"""Layered, provable multi-database configuration for Django.

The names below are imported on first use, so `import django_dbconfig` (as Django
does for INSTALLED_APPS) costs next to nothing; `build_databases` loads the rest.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django_dbconfig.checks.dbcheck import check_databases
    from django_dbconfig.conf.config import DatabaseConfig, ExplainRow, build_databases, load_config, override
    from django_dbconfig.core.errors import DbConfigError
    from django_dbconfig.runtime.databases import (
        add_database,
        remove_database,
        runtime_database,
    )

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
    "DatabaseConfig": "conf.config",
    "ExplainRow": "conf.config",
    "build_databases": "conf.config",
    "load_config": "conf.config",
    "override": "conf.config",
    "DbConfigError": "core.errors",
    "add_database": "runtime.databases",
    "check_databases": "checks.dbcheck",
    "remove_database": "runtime.databases",
    "runtime_database": "runtime.databases",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
