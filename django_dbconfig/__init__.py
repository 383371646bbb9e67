"""Layered, provable multi-database configuration for Django."""

from .config import DatabaseConfig, ExplainRow, build_databases, load_config, override
from .errors import DbConfigError

__all__ = ["DatabaseConfig", "DbConfigError", "ExplainRow", "build_databases", "load_config", "override"]
__version__ = "0.1.0"
