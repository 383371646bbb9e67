"""manage.py dbcheck: prove TLS, schemas, session settings and routing on the live servers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from django_dbconfig.checks.dbcheck import verify
from django_dbconfig.core import problems
from django_dbconfig.core.report import render_text
from django_dbconfig.operations.poolers import apply_role_defaults


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not 0 < seconds <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got {value}")
    return seconds


class Command(BaseCommand):
    help = (
        "Check every database alias against its live server: reachability, TLS as the server "
        "sees it, search_path schemas, session settings, read-only mode and routing."
    )
    # dbcheck reports the configuration checks itself, per alias, instead of stopping on them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database",
            action="append",
            dest="databases",
            choices=tuple(connections),
            metavar="ALIAS",
            help="Check only this alias (repeatable). Default: every alias.",
        )
        parser.add_argument("--format", choices=("text", "json"), default="text")
        parser.add_argument(
            "--require-tls", action="store_true", help="Fail every alias whose session is not on TLS."
        )
        parser.add_argument(
            "--create-schemas", action="store_true", help="Create the search_path schemas that are missing."
        )
        parser.add_argument(
            "--apply-settings",
            action="store_true",
            help='Behind a pooler "transaction": write the session settings as the role\'s defaults '
            "in the database (ALTER ROLE ... IN DATABASE ... SET), then check them.",
        )
        parser.add_argument(
            "--timeout",
            type=_seconds,
            metavar="SECONDS",
            help="Connect timeout for every alias, instead of each alias's own.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = list(dict.fromkeys(options["databases"] or connections))
        applied = [apply_role_defaults(alias) for alias in aliases] if options["apply_settings"] else []
        report = verify(
            aliases,
            timeout=options["timeout"],
            require_tls=options["require_tls"],
            create_schemas=options["create_schemas"],
        )
        by_alias = {db.alias: db for db in report.databases}
        # In JSON mode stdout is the report alone; what was written goes to stderr.
        out = self.stderr if options["format"] == "json" else self.stdout
        for result in applied:
            if result.error:
                by_alias[result.alias].add(problems.problem(problems.E116, result.error, alias=result.alias))
            for statement in result.statements:
                out.write(f"{result.alias}: {statement}")
            if result.statements:
                out.write(
                    f"{result.alias}: written. Server connections the pooler already holds keep the "
                    "old values until they reconnect (PgBouncer: RECONNECT, or server_lifetime)."
                )
            elif result.skipped and options["databases"]:
                out.write(f"{result.alias}: --apply-settings: {result.skipped}.")
        if options["format"] == "json":
            self.stdout.write(json.dumps(report.as_json(), indent=2))
        else:
            for line in render_text(report, self.style):
                self.stdout.write(line)
        if not report.ok:
            failed = report.failed
            what = (
                f"{len(failed)} of {len(report.databases)} database(s) failed: {', '.join(failed)}"
                if failed
                else "routing or configuration has errors"
            )
            raise CommandError(f"dbcheck: {what}.", returncode=1)
