"""Read-your-writes across requests: a client that wrote reads from the primary for a while.

`ReadYourWritesMiddleware` gives a response whose request wrote to a primary with
replicas a signed cookie (Django's signing, no server state) naming those primaries.
While the cookie is younger than the pin window, that client's requests read those
primaries from the primary, on whichever process or server behind a load balancer
answers them. Then reads return to the replicas, which have replayed the write.

Settings:

- `DBCONFIG_PIN_SECONDS`: the window, a duration (`5`, `"500ms"`, `"2min"`). Raised
  to the largest `max_replica_lag` of the router's replicas when that is longer;
  without either the middleware refuses to start.
- `DBCONFIG_PIN_COOKIE`: the cookie's name, default `"dbconfig_pin"`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db import connections, router
from django.http import HttpRequest, HttpResponseBase

from django_dbconfig.core.durations import parse_duration
from django_dbconfig.core.errors import DbConfigError
from django_dbconfig.routers import DatabaseRouter, pin_primaries, written_primaries

logger = logging.getLogger(__name__)

__all__ = ["ReadYourWritesMiddleware", "pin_window"]

COOKIE = "dbconfig_pin"
# Keeps this cookie's signature from being valid for any other signed value of the project.
SALT = "django_dbconfig.middleware.ReadYourWritesMiddleware"


def pin_window() -> float:
    """Seconds a client stays on the primary after a write (see the module's docstring)."""
    chosen = getattr(settings, "DBCONFIG_PIN_SECONDS", None)
    seconds = 0.0
    if chosen is not None:
        try:
            seconds = parse_duration(chosen) / 1000
        except ValueError as exc:
            raise DbConfigError(
                f"settings.DBCONFIG_PIN_SECONDS: {exc}. Set how long a client reads from the "
                'primary after it writes, e.g. DBCONFIG_PIN_SECONDS = "5s".'
            ) from None
    lags = [
        lag
        for each in router.routers
        if isinstance(each, DatabaseRouter)
        for lag in each.max_replica_lags.values()
    ]
    # A replica the router reads from lags at most its max_replica_lag: the write is there by then.
    seconds = max([seconds, *lags])
    if seconds <= 0:
        raise DbConfigError(
            "ReadYourWritesMiddleware: no pin window. Set settings.DBCONFIG_PIN_SECONDS (how long a "
            'client reads from the primary after it writes, e.g. "5s"), or max_replica_lag on the '
            "replicas (the window is then the largest of them)."
        )
    return seconds


class ReadYourWritesMiddleware:
    """Pin a client that wrote to the primary for the pin window, with a signed cookie."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.cookie = str(getattr(settings, "DBCONFIG_PIN_COOKIE", COOKIE))
        pin_window()  # a missing or bad window is an error at startup, not on the first write
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        window, carried = self._carry(request)
        response: HttpResponseBase = self.get_response(request)
        self._remember(request, response, window, carried)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        window, carried = self._carry(request)
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        # The view's ORM calls ran in worker threads; their writes came back to this task.
        self._remember(request, response, window, carried)
        return response

    def _carry(self, request: HttpRequest) -> tuple[float, frozenset[str]]:
        """Pin the primaries the client's cookie names, if the cookie is genuine and in its window."""
        window = pin_window()
        age = timedelta(seconds=window)
        value = request.get_signed_cookie(self.cookie, default=None, salt=SALT, max_age=age)
        # A runtime alias removed since then is no longer there to pin.
        carried = frozenset(a for a in (value or "").split(",") if a and a in connections.settings)
        if carried:
            pin_primaries(carried)
        return window, carried

    def _remember(
        self, request: HttpRequest, response: HttpResponseBase, window: float, carried: frozenset[str]
    ) -> None:
        written = written_primaries()
        if not written:
            return
        # The primaries still pinned from before stay pinned, for a window from now (on the safe side).
        response.set_signed_cookie(
            self.cookie,
            ",".join(sorted(written | carried)),
            salt=SALT,
            max_age=int(window) + 1,  # the browser's copy; the signature's age is what counts
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
