"""SQLite: a file relative to base_dir; the lock timeout is the busy timeout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django_dbconfig.backends.base.settings import (
    COMMON_KEYS,
    GALERA_ONLY,
    SERVER_KEYS,
    Backend,
    RenderContext,
    resolve_path,
)
from django_dbconfig.core.durations import MAX_MS, format_duration
from django_dbconfig.core.types import DatabaseSettings

_NO_SERVER = "SQLite is a local file: there is no server, network, TLS or user."


class SQLite(Backend):
    name = "sqlite"
    display = "SQLite"
    engine = "django.db.backends.sqlite3"
    keys = COMMON_KEYS | {"lock_timeout"}
    reasons = {
        **{key: _NO_SERVER for key in SERVER_KEYS - COMMON_KEYS},
        **{key: "SQLite is a local file, not a node of a Galera cluster." for key in GALERA_ONLY},
        "pooler": "SQLite is a local file: there is no server for a pooler to stand in front of.",
        "password_provider": "SQLite is a local file: there is no password to provide.",
    }
    defaults = {"conn_max_age": 0}
    # sqlite3.connect()'s keywords, and what Django's engine reads itself.
    driver_options = frozenset(
        {
            "timeout",
            "detect_types",
            "isolation_level",
            "check_same_thread",
            "factory",
            "cached_statements",
            "uri",
            "autocommit",
            "init_command",
            "transaction_mode",
        }
    )
    generated_by = {"timeout": ("lock_timeout",)}

    def render_common(self, values: Mapping[str, Any], ctx: RenderContext) -> DatabaseSettings:
        settings = super().render_common(values, ctx)
        name = str(values.get("name", ""))
        if name != ":memory:" and not name.startswith("file:"):
            settings["NAME"] = resolve_path(name, ctx.base_dir)
        return settings

    def render_options(self, values: Mapping[str, Any], ctx: RenderContext) -> dict[str, Any]:
        if "lock_timeout" in values:
            # sqlite3.connect's timeout is how long to wait for a lock, in seconds.
            return {"timeout": values["lock_timeout"] / 1000}
        return {}

    def keys_from_options(
        self, options: Mapping[str, Any], base_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        verbatim = dict(options)
        timeout = verbatim.get("timeout")
        if (
            isinstance(timeout, (int, float))
            and not isinstance(timeout, bool)
            and 0 <= timeout * 1000 <= MAX_MS
        ):
            ms = timeout * 1000
            if ms == int(ms):
                del verbatim["timeout"]
                return {"lock_timeout": format_duration(int(ms))}, verbatim
        return {}, verbatim
