"""Layered, provable multi-database configuration for Django."""

from typing import Any

from .config import DatabaseConfig, ExplainRow, build_databases, load_config, override
from .errors import DbConfigError

# Imported on first use: settings.py pays nothing for them.
_RUNTIME = ("add_database", "check_databases", "remove_database", "runtime_database")

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


def __getattr__(name: str) -> Any:
    if name in _RUNTIME:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
