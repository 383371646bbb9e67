"""The shared part of the engines: a local look at the socket before Django's round trip.

Django's CONN_HEALTH_CHECKS runs `is_usable()` (a `SELECT 1` or a ping) before the
first query of every request on a persistent connection. Between requests the
connection is idle, and on an idle connection the server has nothing to say: if the
socket has something to read, it is most often the server closing the session
(restart, failover, idle timeout, a killed backend). Each engine looks at the socket
without blocking and answers healthy, dead or unsure; only "unsure" pays for
Django's own check. An engine that knows, without a round trip, that the server
of a write alias now refuses writes (PostgreSQL's `in_hot_standby`) answers
demoted: the connection is closed like a dead one.
"""

from __future__ import annotations

import enum
import logging
import select
from typing import Any, ClassVar

from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)


class Verdict(enum.Enum):
    """What a look at the idle connection can tell without asking the server."""

    HEALTHY = "healthy"
    DEAD = "dead"
    UNSURE = "unsure"
    # Alive, but the server of a write alias now says it refuses writes (a standby).
    DEMOTED = "demoted"


# The members as plain names for the per-request path: before Python 3.12, reading a
# member off its class goes through the enum's descriptor (about 70 ns each).
HEALTHY, DEAD, UNSURE, DEMOTED = Verdict.HEALTHY, Verdict.DEAD, Verdict.UNSURE, Verdict.DEMOTED


def socket_readable(fd: int) -> bool:
    """Whether the server has sent anything (data, a close, an error) on `fd`; never waits."""
    if hasattr(select, "poll"):
        # poll, unlike select, works for descriptors above FD_SETSIZE (1024).
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, errored = select.select([fd], [], [fd], 0)
    return bool(readable or errored)


class SocketWatch:
    """`socket_readable` for one connection at a time, reusing its poll object per request."""

    def __init__(self) -> None:
        self.fd = -1
        self.poller = select.poll() if hasattr(select, "poll") else None

    def readable(self, fd: int) -> bool:
        if self.poller is None:
            return socket_readable(fd)
        if fd != self.fd:
            # A new connection: poll watches descriptor numbers, so follow the number.
            if self.fd >= 0:
                self.poller.unregister(self.fd)
            self.poller.register(fd, select.POLLIN | select.POLLPRI)
            self.fd = fd
        return bool(self.poller.poll(0))


class SocketHealthCheck(BaseDatabaseWrapper):
    """Run the local socket check before Django's health check; fall back to it when unsure.

    Mixed in before Django's own `DatabaseWrapper`. Only the per-request health check
    changes: the check after a query error (`close_if_unusable_or_obsolete`) still
    uses Django's `is_usable()`, since a connection that just failed deserves a real
    round trip. When `is_usable()` is not Django's own (a subclass overrides it, or
    code wraps or patches it), the per-request check is Django's too, so that code runs.
    """

    # Set by Django's BaseDatabaseWrapper (4.1+); the stubs do not declare them.
    health_check_enabled: bool
    health_check_done: bool
    # The `is_usable` of the Django backend each engine extends, set by the engine.
    django_is_usable: ClassVar[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.socket_watch = SocketWatch()

    def socket_verdict(self) -> Verdict:
        """Judge the idle connection from local state only."""
        raise NotImplementedError

    def is_usable_replaced(self) -> bool:
        """Whether `is_usable` was overridden, wrapped or patched, on the class or this instance."""
        return "is_usable" in vars(self) or type(self).is_usable is not self.django_is_usable

    def round_trip_check(self) -> None:
        """Django's own per-request check: `is_usable()`, and a close if it fails."""
        super().close_if_health_check_failed()

    def close_if_health_check_failed(self) -> None:
        if self.connection is None or not self.health_check_enabled or self.health_check_done:
            return
        if self.is_usable_replaced():
            self.round_trip_check()
            return
        try:
            verdict = self.socket_verdict()
        except Exception:
            # The check must never be the reason a request fails: ask the server instead.
            logger.debug("socket check of %r failed; using Django's check", self.alias, exc_info=True)
            verdict = UNSURE
        if verdict is HEALTHY:
            self.health_check_done = True
            return
        if verdict is UNSURE:
            self.round_trip_check()
            return
        if verdict is DEAD:
            logger.info("database %r: the server closed the idle connection; reconnecting", self.alias)
            self.close()
        elif verdict is DEMOTED:
            logger.warning(
                "database %r: the server now refuses writes (a demoted primary); reconnecting", self.alias
            )
            self.close()
        self.health_check_done = True
