"""Whether a replica answers: checked when a request or task first reads from it.

The check is the one Django makes before a request's first query on a connection
(its health check when `CONN_HEALTH_CHECKS` is on, then connecting if needed), made
a little earlier, in the router: the query that follows uses the same connection,
so a replica that answers costs nothing more. A replica that refuses is reported
to the router, which sends the read elsewhere.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from django.core.exceptions import SynchronousOnlyOperation
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

__all__ = ["Answer", "answers"]


class Answer(NamedTuple):
    ok: bool
    error: str = ""  # the error's class name: never its text, which may name the server's users


OK = Answer(ok=True)


def answers(alias: str) -> Answer | None:
    """Whether `alias`'s connection in this thread is usable, connecting if needed.

    None when it cannot be checked here: in a running event loop, where Django
    refuses to connect (the query itself runs in a worker thread, which checks).
    An alias that django.db.connections does not know is not checked.
    """
    if alias not in connections.settings:
        return OK
    connection = connections[alias]
    try:
        try:
            connection.close_if_health_check_failed()
        except DatabaseError:
            logger.debug("closing the broken connection of %s failed", alias, exc_info=True)
        connection.ensure_connection()
    except SynchronousOnlyOperation:
        return None
    except DatabaseError as exc:
        return Answer(ok=False, error=type(exc.__cause__ or exc).__name__)
    return OK
