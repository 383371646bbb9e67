"""Backend families, registered in one place."""

from __future__ import annotations

from .base import Backend, RenderContext
from .mysql import MariaDB, MySQL
from .postgresql import PostgreSQL
from .sqlite import SQLite

BACKENDS: dict[str, Backend] = {
    backend.name: backend for backend in (PostgreSQL(), MySQL(), MariaDB(), SQLite())
}

__all__ = ["BACKENDS", "Backend", "RenderContext"]
