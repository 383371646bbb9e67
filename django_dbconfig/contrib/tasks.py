"""Around a unit of background work, what Django does around a request.

A task-queue worker (Celery, RQ, Dramatiq, Huey) or a long-lived thread runs job
after job outside any request, so nothing sends Django's `request_started` and
`request_finished`: a connection past its `CONN_MAX_AGE`, or broken by a server
restart, is kept and fails every later job; a pooled connection is never handed
back; the router's read-your-writes pins of one job send the next job's reads to
the primary. Call the pair around each job, or use the context manager:

```python
from django_dbconfig.contrib.tasks import task_finished, task_started, unit_of_work

with unit_of_work():
    run_the_job()
```

For Celery, `django_dbconfig.contrib.celery.connect(app)` connects them to Celery's
task signals.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from django.db import close_old_connections, connections, reset_queries

from django_dbconfig.routers import reset_pins

logger = logging.getLogger(__name__)

__all__ = ["task_finished", "task_started", "unit_of_work"]


def task_started() -> None:
    """Before a job: forget the last job's pins and queries, close this thread's connections
    that are past `CONN_MAX_AGE` or broken, and arm each one's health check for its next query."""
    reset_pins()
    reset_queries()
    close_old_connections()


def task_finished(*, close: bool = False) -> None:
    """After a job: close (or hand back to their pool) this thread's connections that are past
    `CONN_MAX_AGE` or broken, and forget the job's pins.

    With `close=True`, every connection of this thread is closed: for a thread that ends
    with the job (a connection left to a finished thread stays open until the garbage
    collector frees it).
    """
    try:
        if close:
            connections.close_all()
        else:
            close_old_connections()
    finally:
        reset_pins()


@contextlib.contextmanager
def unit_of_work(*, close: bool = False) -> Iterator[None]:
    """`task_started()` before the block and `task_finished(close=close)` after it, even when it raises."""
    task_started()
    try:
        yield
    finally:
        task_finished(close=close)
