"""The health endpoint's probing, cache and OpenMetrics text (views.py serves them).

`stop_probing()` stops the probing threads and closes their connections (status.py).
"""

from __future__ import annotations

from typing import Any

__all__ = ["stop_probing"]


def __getattr__(name: str) -> Any:
    if name == "stop_probing":
        # Lazily: status.py reads django.db, which a settings module importing this must not load.
        from django_dbconfig.health.status import stop_probing

        return stop_probing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
