"""Under ASGI, close at the end of a request the connections that request opened.

Django's ASGIHandler serves each request in its own thread-sensitive context: the
request's sync code (request_started receivers, sync middleware and views, the ORM
called from async views, and `response.close()` with request_finished) runs in one
thread made for that request, and the request's connections live in a context that
ends with it. No later request can reuse them, yet CONN_MAX_AGE would keep them
open until the garbage collector frees the wrapper, and meanwhile every request
adds one. So a thread that serves an ASGI request records the connections it opens
and closes them when the request finishes (with a pool, they go back to the pool).

Under WSGI (or the test client) nothing changes: a worker thread serves request
after request and keeps its persistent connection.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from typing import Any

from django.core import signals
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)

# `opened`: the connections opened by the ASGI request this thread is serving. Held
# weakly: a thread that is marked but never sees request_finished (a shared worker of
# `sync_to_async(thread_sensitive=False)`) must not keep connections alive.
_requests = threading.local()
Opened = weakref.WeakSet[BaseDatabaseWrapper]


def _asgi_request_thread() -> Opened | None:
    """The connections of the ASGI request this thread serves, or None outside one."""
    opened: Opened | None = getattr(_requests, "opened", None)
    if opened is None and _in_thread_sensitive_context():
        # The first request of a process: this engine, and so the request_started
        # receiver, was imported only now, by the request's first query.
        opened = _requests.opened = weakref.WeakSet()
    return opened


def serving_asgi_request() -> bool:
    """Whether this thread serves an ASGI request now (its connections end with the request)."""
    return _asgi_request_thread() is not None


def _in_thread_sensitive_context() -> bool:
    # In Django, only ASGIHandler runs requests in a ThreadSensitiveContext; its
    # sync code then runs in a thread of that context.
    if "django.core.handlers.asgi" not in sys.modules:
        return False
    from asgiref.sync import SyncToAsync  # loaded by Django's ASGI handler, checked above

    return SyncToAsync.thread_sensitive_context.get(None) is not None


def _is_asgi(sender: object) -> bool:
    # Django's module is loaded in any process an ASGI server runs it in; a WSGI
    # process never needs to import it for this check.
    asgi = sys.modules.get("django.core.handlers.asgi")
    return asgi is not None and isinstance(sender, type) and issubclass(sender, asgi.ASGIHandler)


def request_started(sender: object, **kwargs: Any) -> None:
    """Mark this thread as serving an ASGI request (sent by ASGIHandler in the request's thread)."""
    if _is_asgi(sender):
        _requests.opened = weakref.WeakSet()


def request_finished(sender: object, **kwargs: Any) -> None:
    """Close every connection the ASGI request of this thread opened."""
    opened: Opened | None = getattr(_requests, "opened", None)
    if opened is None:
        return
    del _requests.opened
    for wrapper in list(opened):
        if wrapper.connection is None or wrapper.in_atomic_block:
            continue
        try:
            wrapper.close()
        except Exception:
            logger.warning("closing %r at the end of an ASGI request failed", wrapper.alias, exc_info=True)


signals.request_started.connect(request_started, dispatch_uid="django_dbconfig.backends.base.asgi.started")
signals.request_finished.connect(request_finished, dispatch_uid="django_dbconfig.backends.base.asgi.finished")


class ClosedAtAsgiRequestEnd(BaseDatabaseWrapper):
    """Record each new connection with the ASGI request being served, if any."""

    def connect(self) -> None:
        super().connect()
        opened = _asgi_request_thread()
        if opened is not None:
            opened.add(self)
