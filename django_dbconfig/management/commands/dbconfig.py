"""manage.py dbconfig: every effective setting of each alias and where it came from.

With --export: the current DATABASES, whatever produced it, as dbconfig.json
and .secrets/dbconfig.json (see django_dbconfig.operations.export).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from django_dbconfig.conf.config import DatabaseConfig, json_value, last_config
from django_dbconfig.core.errors import DbConfigError
from django_dbconfig.operations.export import export_databases, write_export

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Show the effective database settings of each alias and where each value came from."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            metavar="ALIAS",
            help="Show only this alias (repeatable). Default: every alias.",
        )
        parser.add_argument("--format", choices=("text", "json"), default="text")
        parser.add_argument(
            "--export",
            action="store_true",
            help="Write the current DATABASES as dbconfig.json and .secrets/dbconfig.json (mode 0600); "
            "existing files are never overwritten.",
        )
        parser.add_argument(
            "--output-dir",
            type=Path,
            metavar="DIR",
            help="Folder for --export; paths inside it are written relative to it. "
            "Default: settings.BASE_DIR, else the current directory.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["export"]:
            self.export(options["databases"], options["output_dir"])
            return
        config = last_config()
        if config is None:
            raise CommandError(
                "DATABASES was not built by django_dbconfig.build_databases(), so there is nothing "
                "to explain. In settings.py: DATABASES = build_databases(BASE_DIR).",
                returncode=1,
            )
        aliases = options["databases"] or list(config.aliases)
        unknown = [a for a in aliases if a not in config.aliases]
        if unknown:
            raise CommandError(
                f"Unknown alias {', '.join(unknown)}. Known aliases: {', '.join(config.aliases)}.",
                returncode=1,
            )
        if options["format"] == "json":
            self.stdout.write(json.dumps(as_json(config, aliases), indent=2))
        else:
            self.write_text(config, aliases)

    def write_text(self, config: DatabaseConfig, aliases: list[str]) -> None:
        for index, alias in enumerate(aliases):
            if index:
                self.stdout.write("")
            vendor = config.vendors[alias]
            self.stdout.write(self.style.MIGRATE_HEADING(f"{alias} ({vendor})"))
            rows = config.explain(alias)
            key_width = max(len(row.key) for row in rows)
            value_width = min(48, max(len(row.value) for row in rows))
            for row in rows:
                source = row.source if row.source != "default" else self.style.NOTICE("default")
                self.stdout.write(f"  {row.key:<{key_width}}  {row.value:<{value_width}}  {source}")
            unused = config.unused(alias)
            if unused:
                self.stdout.write(
                    self.style.WARNING(f"  unused: {config.vendors[alias]} has no use for these keys")
                )
                for row in unused:
                    self.stdout.write(f"  {row.key:<{key_width}}  {row.value:<{value_width}}  {row.source}")
        if config.routes:
            self.stdout.write("")
            self.stdout.write(self.style.MIGRATE_HEADING("routes"))
            width = max(len(r) for r in config.routes)
            for route, alias in config.routes.items():
                self.stdout.write(f"  {route:<{width}}  -> {alias}  {config.route_sources[route]}")

    def export(self, aliases: list[str] | None, output_dir: Path | None) -> None:

        unknown = [a for a in aliases or () if a not in settings.DATABASES]
        if unknown:
            raise CommandError(
                f"Unknown alias {', '.join(unknown)}. Known aliases: {', '.join(settings.DATABASES)}.",
                returncode=1,
            )
        databases = {alias: settings.DATABASES[alias] for alias in aliases or settings.DATABASES}
        directory = (output_dir or Path(getattr(settings, "BASE_DIR", None) or Path.cwd())).resolve()
        backends = {alias: self.backend_of(alias) for alias in databases}
        try:
            written = write_export(
                export_databases(databases, backends=backends, base_dir=directory), directory
            )
        except DbConfigError as exc:
            raise CommandError(str(exc), returncode=1) from None
        for path in written:
            secret = " (secrets, mode 0600: keep it out of git)" if path.parent.name == ".secrets" else ""
            self.stdout.write(f"Wrote {path}{secret}")
        self.stdout.write(
            f"It renders the same DATABASES. In settings.py: DATABASES = build_databases({str(directory)!r})"
        )
        moved = [a for a in databases if databases[a].get("ENGINE") in _DJANGO_ENGINES]
        if moved:
            self.stdout.write(
                f"{', '.join(moved)} used Django's own engine: build_databases() gives them "
                "django-dbconfig's engine of the same family (a subclass of Django's, whose health "
                "check costs no round trip). Set engine to keep Django's."
            )

    def backend_of(self, alias: str) -> str:
        """The alias's backend family, asking a MySQL-family server whether it is MariaDB."""
        connection = connections[alias]
        vendor = str(connection.vendor)
        if vendor == "mysql":
            try:
                return "mariadb" if connection.mysql_is_mariadb else "mysql"  # type: ignore[attr-defined]
            except Exception as exc:  # an unreachable server: both render the same export
                logger.warning(
                    "dbconfig --export: could not ask %s whether it is MariaDB (%s)",
                    alias,
                    type(exc).__name__,
                )
                self.stderr.write(
                    f'Could not reach "{alias}" to tell MySQL from MariaDB; wrote backend "mysql". '
                    'Change it to "mariadb" if the server is MariaDB.'
                )
                return "mysql"
        if vendor in ("postgresql", "sqlite"):
            return vendor
        raise CommandError(
            f'Alias "{alias}" uses {connection.settings_dict["ENGINE"]} (vendor {vendor}), which '
            "django-dbconfig does not configure. Export the other aliases with --database.",
            returncode=1,
        )


_DJANGO_ENGINES = ("django.db.backends.postgresql", "django.db.backends.mysql")


def as_json(config: DatabaseConfig, aliases: list[str]) -> dict[str, Any]:
    """The shape documented in docs/json.md: values typed, secrets masked."""
    return {
        "databases": [
            {
                "alias": alias,
                "vendor": config.vendors[alias],
                "replica_of": next((p for p, names in config.replicas.items() if alias in names), None),
                "settings": [
                    {"key": row.key, "value": json_value(row.key, value), "source": row.source}
                    for row, value in config.typed_rows(alias)
                ],
                "unused": [
                    {"key": row.key, "value": json_value(row.key, value), "source": row.source}
                    for row, value in config.typed_rows(alias, unused=True)
                ],
            }
            for alias in aliases
        ],
        "routes": [
            {"route": route, "alias": alias, "source": config.route_sources[route]}
            for route, alias in config.routes.items()
        ],
    }
