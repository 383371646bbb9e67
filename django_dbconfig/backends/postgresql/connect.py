"""Opening a connection while the servers change roles: wait for a server that fits, within connect_timeout.

During a planned switchover (Patroni, repmgr, a managed service) there is a moment with
no primary: the old one is shutting down or already a standby, the new one is not yet
promoted. libpq tries every host of the list once and fails at once ("session is
read-only"), so every request arriving in that moment would fail. When a server
answered that it is changing state (read-only, a standby, shutting down, starting up),
or a proxy in front closed the connection before any server answered (HAProxy while
its checks find no server up), the attempt is repeated until connect_timeout has passed
since the first one. A server that refuses connections or does not answer fails as
before, at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What libpq or the server says when a server answered but cannot take this session yet.
IN_TRANSITION = (
    "session is read-only",  # target_session_attrs=read-write met a standby or read-only server
    "server is in hot standby mode",  # target_session_attrs=primary met a standby
    "server is not in hot standby mode",  # target_session_attrs=standby met a primary
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
    "the database system is in recovery mode",
    # A proxy (HAProxy in TCP mode) that accepted the connection and closed it because no
    # server behind it is up: nothing was sent to a server yet, so trying again is safe.
    "server closed the connection unexpectedly",
)
FIRST_PAUSE_S = 0.05
LONGEST_PAUSE_S = 0.25


def in_transition(error: BaseException) -> bool:
    """True when a server answered that it cannot take the session now, because of its role or state."""
    text = str(error).lower()
    return any(marker in text for marker in IN_TRANSITION)


def connect_timeout_s(conn_params: Mapping[str, Any]) -> float:
    """libpq's connect_timeout in seconds (0 when unset or not a number)."""
    try:
        return max(float(conn_params.get("connect_timeout") or 0), 0.0)
    except (TypeError, ValueError):
        return 0.0


def waiting_for_role(
    connect: Callable[[], T], conn_params: Mapping[str, Any], *, alias: str, retry_on: type[BaseException]
) -> T:
    """`connect()`, repeated while the servers answer that they are changing role, until
    connect_timeout has passed; then the last error is raised."""
    deadline = time.monotonic() + connect_timeout_s(conn_params)
    pause = FIRST_PAUSE_S
    waited = False
    while True:
        try:
            connection = connect()
        except retry_on as exc:
            if not in_transition(exc) or time.monotonic() + pause > deadline:
                raise
            if not waited:
                logger.info(
                    "Database %r: no server can take the session yet (%s); trying again until "
                    "connect_timeout (%.0f s)",
                    alias,
                    str(exc).strip().splitlines()[-1].strip(),
                    connect_timeout_s(conn_params),
                )
                waited = True
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_S)
        else:
            if waited:
                logger.info("Database %r: connected after waiting for a server to change role", alias)
            return connection
