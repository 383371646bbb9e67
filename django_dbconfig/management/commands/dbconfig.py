"""manage.py dbconfig: every effective setting of each alias and where it came from."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...config import DatabaseConfig, json_value, last_config


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

    def handle(self, *args: Any, **options: Any) -> None:
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
