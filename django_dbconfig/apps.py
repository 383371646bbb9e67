"""Django app config: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class DbConfigAppConfig(AppConfig):
    name = "django_dbconfig"
    verbose_name = "Database configuration"
    default = True

    def ready(self) -> None:
        # Imported once the app registry is ready, as Django's own apps do: the checks
        # and the router reach django.db and the migrate command.
        # The fork hooks, connected on import, also see wrappers of engines other than ours.
        from django_dbconfig.backends.base import forks  # noqa: F401
        from django_dbconfig.checks import check_configuration, check_deploy, check_live
        from django_dbconfig.routers import connect_signals

        # Read-only aliases name themselves in refused writes, router or not;
        # pins are released at each request's end.
        connect_signals()

        # Static checks open no connection: they run with every `manage.py check`.
        checks.register(check_configuration, "dbconfig")
        # The built-in SQLite default with DEBUG off: only under `check --deploy`.
        checks.register(check_deploy, "dbconfig", deploy=True)
        # Live checks probe the servers, only when asked: `check --database ALIAS`.
        checks.register(check_live, "dbconfig", checks.Tags.database)
