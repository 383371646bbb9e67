"""manage.py migrate, connected with the alias's `migrate` keys and never read-only.

Django's own command, run inside `operations.admin_connection(alias)`: the switch
happens before the command touches the connection (its checks, the migration
history, `django_migrations`), and is undone when it ends.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands import migrate
from django.db.migrations.exceptions import MigrationSchemaMissing

from django_dbconfig.operations.admin import admin_connection, has_migrate_keys


class Command(migrate.Command):
    help = migrate.Command.help + " Uses the alias's migrate keys (django-dbconfig) when it has them."

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        with admin_connection(alias):
            try:
                super().handle(*args, **options)
            except MigrationSchemaMissing as exc:
                fix = (
                    "Check that its migrate user may create tables in this database."
                    if has_migrate_keys(alias)
                    else "Give it an owner's credentials under migrate (e.g. "
                    f"DBCONFIG_{alias.upper()}_MIGRATE_USER and DBCONFIG_{alias.upper()}_MIGRATE_PASSWORD, "
                    f'or "migrate": {{"user": ..., "password": ...}} for {alias} in .secrets/dbconfig.json).'
                )
                raise CommandError(
                    f"migrate --database {alias}: {exc}. " + fix,
                    returncode=1,
                ) from exc
