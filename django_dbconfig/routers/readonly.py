"""The read-only guard: a write refused by a read-only alias or a replica names the alias.

Aliases with `read_only: true`, and replicas, get a small execute wrapper that turns
the server's refusal of a write into an error naming the alias, why it is read-only
(with the source of `read_only`), and where writes should go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.db import connections
from django.db.utils import DatabaseError, InternalError, OperationalError

from django_dbconfig.backends import BACKENDS
from django_dbconfig.conf.config import last_config

logger = logging.getLogger(__name__)

__all__ = [
    "ReadOnlyDatabaseError",
    "ReadOnlyInternalError",
    "ReadOnlyOperationalError",
    "guard_open_connections",
    "on_connection_created",
]


class ReadOnlyDatabaseError(DatabaseError):
    """The server refused a write on a read-only alias or a replica."""


# The refusal is also still the error Django raised (InternalError from psycopg,
# OperationalError from MySQLdb), so code catching that keeps working.
class ReadOnlyInternalError(ReadOnlyDatabaseError, InternalError):
    """A read-only refusal that Django reported as InternalError (PostgreSQL)."""


class ReadOnlyOperationalError(ReadOnlyDatabaseError, OperationalError):
    """A read-only refusal that Django reported as OperationalError (MySQL, MariaDB)."""


_REFUSAL_CLASSES: dict[type[DatabaseError], type[ReadOnlyDatabaseError]] = {
    InternalError: ReadOnlyInternalError,
    OperationalError: ReadOnlyOperationalError,
}


class _ReadOnlyGuard:
    """Execute wrapper: re-raise the server's refusal of a write naming the alias and why."""

    def __init__(
        self, alias: str, why: str, fix: str, refused: Callable[[BaseException | None], bool]
    ) -> None:
        self.alias, self.why, self.fix = alias, why, fix
        self.refused = refused

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Mapping[str, Any]
    ) -> Any:
        try:
            return execute(sql, params, many, context)
        except DatabaseError as exc:
            if not self.refused(exc.__cause__):
                raise
            # The server's own words (no secrets in them) follow ours, for searching logs.
            args: tuple[Any, ...] = getattr(exc.__cause__, "args", ())
            # MySQLdb's args are (errno, message); psycopg's message is the first line.
            text = str(args[1]) if len(args) == 2 and isinstance(args[0], int) else str(exc)
            server_said = (text.strip().splitlines() or [type(exc).__name__])[0]
            error_class = _REFUSAL_CLASSES.get(type(exc), ReadOnlyDatabaseError)
            raise error_class(
                f"database alias '{self.alias}' is {self.why}: the server refused "
                f"this write ({server_said}). {self.fix}"
            ) from exc


def _guard(connection: Any) -> _ReadOnlyGuard | None:
    """A guard saying why writes on this connection's alias are refused, or None."""
    # Each family says how it renders read_only and how its driver reports a refused write.
    backend = BACKENDS.get(connection.vendor)
    if backend is None or backend.read_only_option is None or backend.read_only_pattern is None:
        return None
    option, pattern, refused = backend.read_only_option, backend.read_only_pattern, backend.refuses_write
    settings_dict = connection.settings_dict
    alias = connection.alias
    primary = (settings_dict.get("TEST") or {}).get("MIRROR")
    # A replica is read-only by default too: that it is a replica says more.
    if primary:
        return _ReadOnlyGuard(
            alias,
            f"a read replica of '{primary}'",
            f"Writes go to '{primary}' (let the router choose, or use .using('{primary}')).",
            refused,
        )
    # Behind a pooler the setting is sent as SET or is the role's default (poolers.py).
    behind_pooler = (settings_dict.get("DBCONFIG") or {}).get("session_settings") or {}
    if (
        pattern.search(str((settings_dict.get("OPTIONS") or {}).get(option, "")))
        or behind_pooler.get("default_transaction_read_only") == "on"
    ):
        source = f"settings.DATABASES[{alias!r}]['OPTIONS'][{option!r}]"
        config = last_config()
        if config is not None and alias in config.aliases:
            source = next((row.source for row in config.explain(alias) if row.key == "read_only"), source)
        return _ReadOnlyGuard(
            alias,
            f"read-only (read_only: true in {source})",
            f"Send writes to another alias, or remove read_only for '{alias}'.",
            refused,
        )
    return None


def _install_guard(connection: Any) -> None:
    if any(isinstance(w, _ReadOnlyGuard) for w in connection.execute_wrappers):
        return
    guard = _guard(connection)
    if guard is None:
        return
    # First in the list is outermost, and a user's execute_wrapper() block pops the last.
    connection.execute_wrappers.insert(0, guard)
    logger.debug("guarding writes on read-only alias %s", connection.alias)


def on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _install_guard(connection)


def guard_open_connections() -> None:
    """Guard connections this thread opened before the router existed."""
    for connection in connections.all(initialized_only=True):
        _install_guard(connection)
