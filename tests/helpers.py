"""A throwaway project folder for tests: dbconfig.json, .secrets/ and a load() that isolates the environment."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest

from django_dbconfig import DatabaseConfig, load_config

# `pool` needs Django's connection pool (5.1+): before, the key is refused, whatever the server.
needs_django_pool = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="Django's connection pool exists from 5.1"
)


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root

    def write_config(self, document: Any, name: str = "dbconfig.json") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        return path

    def write_secrets(self, document: Any) -> Path:
        return self.write_config(document, ".secrets/dbconfig.json")

    def write_file(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def load(self, environ: dict[str, str] | None = None, **kwargs: Any) -> DatabaseConfig:
        return load_config(self.root, environ=environ or {}, **kwargs)

    def databases(self, environ: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
        return dict(self.load(environ, **kwargs).databases())

    def sources(self, alias: str = "default", **kwargs: Any) -> dict[str, str]:
        return {row.key: row.source for row in self.load(**kwargs).explain(alias)}

    def values(self, alias: str = "default", **kwargs: Any) -> dict[str, str]:
        return {row.key: row.value for row in self.load(**kwargs).explain(alias)}


@contextlib.contextmanager
def registered(entries: dict[str, Any]) -> Iterator[None]:
    """Add aliases to django.db.connections (Django's defaults filled in) for the block."""
    from django.db import connections
    from django.db.utils import ConnectionHandler

    from django_dbconfig.health import status

    configured = ConnectionHandler({"default": {"ENGINE": "django.db.backends.sqlite3"}, **entries}).settings
    for alias in entries:
        connections.settings[alias] = configured[alias]
    try:
        yield
    finally:
        status.forget(entries)
        for alias in entries:
            if hasattr(connections._connections, alias):
                connections[alias].close()
                del connections[alias]
            del connections.settings[alias]
