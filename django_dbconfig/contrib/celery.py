"""Celery: around each task, what Django does around a request (`pip install celery`).

```python
# proj/celery.py
app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
django_dbconfig.contrib.celery.connect(app)
```

Before each task (`task_prerun`) and after it (`task_postrun`), in the thread that runs
it, `django_dbconfig.contrib.tasks.task_started()` and `task_finished()` run: connections
past `CONN_MAX_AGE` or broken are closed, pooled ones handed back, and read-your-writes
pins reset. Tasks run eagerly (`task_always_eager`, `.apply()`) run inside their
caller's request or job, and are left alone. A prefork child never uses its parent's
connections: the engines drop them at the fork.
"""

from __future__ import annotations

import logging
from typing import Any

try:
    from celery import signals
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("django_dbconfig.contrib.celery needs Celery: pip install celery") from exc

from django_dbconfig.contrib.tasks import task_finished, task_started

logger = logging.getLogger(__name__)

__all__ = ["connect", "disconnect"]

# The apps whose tasks are handled; None in it means every app's.
_apps: set[Any] = set()


def connect(app: Any = None) -> None:
    """Run `task_started()` before and `task_finished()` after each task of `app`.

    With no app, the tasks of every Celery app in the process. Calling it again adds an app.
    """
    _apps.add(app)
    signals.task_prerun.connect(_prerun, weak=False, dispatch_uid="django_dbconfig.contrib.celery.prerun")
    signals.task_postrun.connect(_postrun, weak=False, dispatch_uid="django_dbconfig.contrib.celery.postrun")


def disconnect() -> None:
    """Undo every `connect()`."""
    _apps.clear()
    signals.task_prerun.disconnect(dispatch_uid="django_dbconfig.contrib.celery.prerun")
    signals.task_postrun.disconnect(dispatch_uid="django_dbconfig.contrib.celery.postrun")


def _handled(task: Any) -> bool:
    if getattr(getattr(task, "request", None), "is_eager", False):
        return False  # runs inside its caller's unit of work
    return None in _apps or getattr(task, "app", None) in _apps


def _prerun(sender: Any = None, **kwargs: Any) -> None:
    if _handled(sender):
        task_started()


def _postrun(sender: Any = None, **kwargs: Any) -> None:
    if _handled(sender):
        task_finished()
