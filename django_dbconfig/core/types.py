"""The shape of what build_databases returns."""

from __future__ import annotations

from typing import Any, TypedDict


class DatabaseSettings(TypedDict, total=False):
    """One entry of Django's DATABASES setting."""

    ENGINE: str
    NAME: str
    USER: str
    PASSWORD: str
    HOST: str
    PORT: int | str
    CONN_MAX_AGE: int | None
    CONN_HEALTH_CHECKS: bool
    ATOMIC_REQUESTS: bool
    AUTOCOMMIT: bool
    TIME_ZONE: str
    DISABLE_SERVER_SIDE_CURSORS: bool
    OPTIONS: dict[str, Any]
    TEST: dict[str, Any]
    # django-dbconfig's own: pooler, session settings, password provider (see render_extra).
    DBCONFIG: dict[str, Any]
