"""The read-only guard: a write refused by a read-only alias or a replica names the alias.

Aliases with `read_only: true`, and replicas, get a small execute wrapper that turns
the server's refusal of a write into an error naming the alias, why it is read-only
(with the source of `read_only`), and where writes should go. It also refuses, before
they reach the server, the statements that would lift read-only mode for the session
or the transaction (`SET default_transaction_read_only = off`, `SET SESSION TRANSACTION
READ WRITE`, ...): each family lists them (`read_only_lift` in its `settings.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.db import connections
from django.db.utils import DatabaseError, InternalError, OperationalError

from django_dbconfig.backends import BACKENDS, Backend
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


# By the name of Django's error (a family's `read_only_error` names one without importing django.db).
_REFUSAL_CLASSES: dict[str, type[ReadOnlyDatabaseError]] = {
    InternalError.__name__: ReadOnlyInternalError,
    OperationalError.__name__: ReadOnlyOperationalError,
}


class _ReadOnlyGuard:
    """Execute wrapper: refuse a statement that lifts read-only mode, and re-raise the
    server's refusal of a write, naming the alias and why."""

    def __init__(
        self,
        alias: str,
        why: str,
        fix: str,
        *,
        backend: Backend,
        session_pooler: bool,
    ) -> None:
        self.alias, self.why, self.fix = alias, why, fix
        self.refused = backend.refuses_write
        self.lift = backend.read_only_lift
        self.session_pooler = session_pooler
        # Ordinary queries cost a lower-casing and a substring test per word (a
        # case-insensitive regex costs ten times more); only a statement holding one of
        # them is read token by token.
        words = backend.read_only_lift_words(session_pooler=session_pooler)
        self.words = tuple((word.partition(" ")[0], word.partition(" ")[2]) for word in words)
        self.refusal = _REFUSAL_CLASSES.get(backend.read_only_error, ReadOnlyDatabaseError)

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Mapping[str, Any]
    ) -> Any:
        if isinstance(sql, str):
            text = sql.lower()
            # `second` is empty for a single word: "" is in every text.
            for first, second in self.words:
                if first in text and second in text:
                    self.refuse_lift(sql, params)
                    break
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
            error_class = _REFUSAL_CLASSES.get(type(exc).__name__, ReadOnlyDatabaseError)
            raise error_class(
                f"database alias '{self.alias}' is {self.why}: the server refused "
                f"this write ({server_said}). {self.fix}"
            ) from exc

    def refuse_lift(self, sql: str, params: Any) -> None:
        """Raise if a statement of `sql` would lift read-only mode."""
        lift = self.lift(sql, params, session_pooler=self.session_pooler)
        if lift is not None:
            # The statement is named by its form only: its text may hold anything.
            raise self.refusal(
                f"database alias '{self.alias}' is {self.why}: this statement would lift "
                f"read-only mode ({lift}), so it was not sent. {self.fix}"
            )


def _guard(connection: Any) -> _ReadOnlyGuard | None:
    """A guard saying why writes on this connection's alias are refused, or None."""
    # Each family says how it renders read_only, how its driver reports a refused write
    # and which of its statements lift read-only mode.
    backend = BACKENDS.get(connection.vendor)
    if backend is None or backend.read_only_option is None or backend.read_only_pattern is None:
        return None
    option, pattern = backend.read_only_option, backend.read_only_pattern
    settings_dict = connection.settings_dict
    alias = connection.alias
    primary = (settings_dict.get("TEST") or {}).get("MIRROR")
    extra = settings_dict.get("DBCONFIG") or {}
    session_pooler = extra.get("pooler") == "session"
    # A replica is read-only by default too: that it is a replica says more.
    if primary:
        return _ReadOnlyGuard(
            alias,
            f"a read replica of '{primary}'",
            f"Writes go to '{primary}' (let the router choose, or use .using('{primary}')).",
            backend=backend,
            session_pooler=session_pooler,
        )
    # Behind a pooler the setting is sent as SET or is the role's default (poolers.py).
    behind_pooler = extra.get("session_settings") or {}
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
            backend=backend,
            session_pooler=session_pooler,
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
