"""Django's system checks: static ones for `manage.py check`, live ones under `check --database`.

The static checks (static.py) open no connection; the live ones are dbcheck's probes
(dbcheck.py). The ids and hints are in core/problems.py; docs/checks.md lists them all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.management.commands.migrate import Command as Migrate

from django_dbconfig.checks.dbcheck import databases_now, probe_aliases
from django_dbconfig.checks.static import (
    configured_aliases,
    deploy_problems,
    routing_problems,
    static_problems,
)
from django_dbconfig.core.problems import W102
from django_dbconfig.core.report import Problem


def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Static checks of every alias: no connection is opened."""
    return [_message(p, None) for _, p in static_problems(databases_now())]


def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """`check --deploy`: the built-in SQLite default serving a project with DEBUG off."""
    return [_message(p, None) for p in deploy_problems(databases_now(), debug=settings.DEBUG)]


def check_live(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """The checks of dbcheck against the servers of `check --database ALIAS`."""
    if databases is None:
        return []
    report = probe_aliases(list(databases))
    report.problems.extend(routing_problems(configured_aliases(databases_now())))
    # migrate runs these checks before it creates the database files W102 is about.
    quiet = {W102} if _running_migrate() else set()
    messages = [_message(p, db.alias) for db in report.databases for p in db.problems if p.id not in quiet]
    return messages + [_message(p, None) for p in report.problems]


def _running_migrate() -> bool:
    """Whether these checks run inside `manage.py migrate` (it runs them with --database)."""
    frame = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Migrate):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _message(found: Problem, alias: str | None) -> CheckMessage:
    cls = Error if found.level == "error" else Warning
    text = f'Database "{alias}": {found.message}' if alias else found.message
    return cls(text, hint=found.hint or None, id=found.id)
