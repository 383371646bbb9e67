"""A write alias whose server turned read-only drops the connection instead of keeping it.

After a switchover the old primary comes back as a standby, or a DNS name or a proxy
moves to a new writer while persistent and pooled connections stay on the old server.
Such a connection passes every health check (the socket is fine, the session answers)
and every write on it fails, request after request. So when the server refuses a write
on an alias meant for writes (not `read_only`, not a replica), the engine closes that
connection (a pooled one is closed before it goes back, so the pool drops it, and the
pool's idle connections are replaced) and raises the error naming the alias. The next
query connects again, and libpq's `target_session_attrs`, the DNS name or the proxy
lead it to the writer of the moment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from django.db.utils import DatabaseError, DatabaseErrorWrapper, InternalError, OperationalError
from django.utils.functional import cached_property

from django_dbconfig.backends.base.network import LostConnectionErrors, NamesAliasWhenLost
from django_dbconfig.backends.base.settings import Backend

logger = logging.getLogger(__name__)

__all__ = [
    "DemotedWriterError",
    "DemotedWriterInternalError",
    "DemotedWriterOperationalError",
    "DropsDemotedWriter",
    "meant_for_writes",
]


class DemotedWriterError(DatabaseError):
    """A write alias's server refused a write because it is (now) read-only or a standby.

    The connection was closed; the next query connects again.
    """


# Still the error Django raised (InternalError from psycopg, OperationalError from
# MySQLdb), so code catching that keeps working.
class DemotedWriterInternalError(DemotedWriterError, InternalError):
    """A demoted writer's refusal that Django reported as InternalError (PostgreSQL)."""


class DemotedWriterOperationalError(DemotedWriterError, OperationalError):
    """A demoted writer's refusal that Django reported as OperationalError (MySQL, MariaDB)."""


_DEMOTED_CLASSES: dict[type[DatabaseError], type[DemotedWriterError]] = {
    InternalError: DemotedWriterInternalError,
    OperationalError: DemotedWriterOperationalError,
}


def meant_for_writes(settings_dict: Mapping[str, Any], backend: Backend) -> bool:
    """Whether a DATABASES entry is meant for writes: not a replica, not rendered read-only."""
    if (settings_dict.get("TEST") or {}).get("MIRROR"):
        return False
    option, pattern = backend.read_only_option, backend.read_only_pattern
    options = settings_dict.get("OPTIONS") or {}
    if option is not None and pattern is not None and pattern.search(str(options.get(option, ""))):
        return False
    extra = settings_dict.get("DBCONFIG") or {}
    # Behind a pooler read_only is sent as SET, or is the role's default (poolers.py).
    return (extra.get("session_settings") or {}).get("default_transaction_read_only") != "on"


class DemotedWriterErrors(LostConnectionErrors):
    """Django's error wrapper; a write refused by a demoted writer closes the connection."""

    wrapper: DropsDemotedWriter

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if exc_type is None:
            # Every query passes here (its execute and its fetches): no frame more than Django's.
            return
        try:
            super().__exit__(exc_type, exc_value, traceback)
        except DatabaseError as error:
            replacement = self.wrapper.demoted_writer_error(error)
            if replacement is None:
                raise
            raise replacement.with_traceback(error.__traceback__) from error.__cause__


class DropsDemotedWriter(NamesAliasWhenLost):
    """The engines' mixin: a write alias drops a connection whose server refuses writes."""

    # The family's renderer, which knows how its driver reports a refused write.
    family: ClassVar[Backend]

    @cached_property
    def meant_for_writes(self) -> bool:
        return meant_for_writes(self.settings_dict, self.family)

    def server_demoted(self, error: BaseException | None) -> str | None:
        """Why the server refused a write as a whole (a standby, read_only on), or None when
        the refusal was this session's own choice (`SET TRANSACTION READ ONLY`)."""
        return "the server refused the write as read-only" if self.family.refuses_write(error) else None

    def discard_connection(self) -> None:
        """Close the connection so that nothing reuses it (a pool included); the next query reconnects."""
        self.close()

    def demoted_writer_error(self, error: DatabaseError) -> DemotedWriterError | None:
        """For a write refused by a demoted writer: close the connection and return the error to raise."""
        if self.connection is None or not self.meant_for_writes or isinstance(error, DemotedWriterError):
            return None
        why = self.server_demoted(error.__cause__)
        if why is None:
            return None
        logger.warning(
            "database alias %r: %s; closing the connection, the next query reconnects", self.alias, why
        )
        try:
            self.discard_connection()
        except Exception:
            # Closing a connection to a server that is going away may fail too: it is gone either way.
            logger.debug("closing the demoted writer's connection of %r failed", self.alias, exc_info=True)
        cls = next((c for base, c in _DEMOTED_CLASSES.items() if isinstance(error, base)), DemotedWriterError)
        message = (
            f'Database "{self.alias}" is meant for writes, but its server was demoted ({why}): '
            "the connection was closed and the next query connects again"
        )
        return cls(*_prefixed(error.args, message))

    @cached_property
    def wrap_database_errors(self) -> DatabaseErrorWrapper:
        return DemotedWriterErrors(self)


def _prefixed(args: tuple[Any, ...], prefix: str) -> tuple[Any, ...]:
    # Keep a driver's error code (MySQLdb's args are (code, message)); the server's words follow ours.
    if args and isinstance(args[-1], str):
        first = (args[-1].strip().splitlines() or [""])[0]
        return (*args[:-1], f"{prefix}. The server said: {first}")
    return (*args, prefix)
