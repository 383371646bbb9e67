"""Django app config: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig


class DbConfigAppConfig(AppConfig):
    name = "django_dbconfig"
    verbose_name = "Database configuration"
    default = True
