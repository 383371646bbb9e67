"""Problem ids and their hints, shared by the system checks and the live probes.

Every id is a constant here with its hint, an instruction; docs/checks.md lists them all.
"""

from __future__ import annotations

from collections.abc import Mapping

from .report import Problem

# Static: configuration, no connection.
E001 = "dbconfig.E001"
W001 = "dbconfig.W001"
W002 = "dbconfig.W002"
W003 = "dbconfig.W003"
W004 = "dbconfig.W004"
W005 = "dbconfig.W005"
W006 = "dbconfig.W006"
# Live: what dbcheck finds on the servers.
E101 = "dbconfig.E101"
E102 = "dbconfig.E102"
E103 = "dbconfig.E103"
E104 = "dbconfig.E104"
E105 = "dbconfig.E105"
E106 = "dbconfig.E106"
E107 = "dbconfig.E107"
E108 = "dbconfig.E108"
E109 = "dbconfig.E109"
E110 = "dbconfig.E110"
E111 = "dbconfig.E111"
W101 = "dbconfig.W101"
W102 = "dbconfig.W102"
# Routing: models and aliases.
E201 = "dbconfig.E201"
E202 = "dbconfig.E202"
E203 = "dbconfig.E203"

HINTS: Mapping[str, str] = {
    E001: 'Point the route at an alias of DATABASES, or add the alias "{alias}".',
    W001: 'Set conn_max_age for "{alias}" to a number of seconds (e.g. 60) instead of null.',
    W002: 'Set sslmode for "{alias}" to "verify-full" (with sslrootcert), or at least "require".',
    W003: "Run: chmod 600 {path}",
    W004: "Add .secrets/ to the .gitignore of {path}, and remove the file from git if it is tracked "
    "(git rm --cached).",
    W005: 'Rename the schema, or quote it everywhere in your own SQL; "{alias}" search_path '
    "is quoted by django-dbconfig.",
    W006: "{fix}",
    E101: 'Check host, port, user and password of "{alias}" and that the server accepts '
    "connections from this machine.",
    E102: 'The server of "{alias}" accepted nothing within the timeout: check host and port, '
    "firewalls, and connect_timeout (or --timeout).",
    E103: 'Enable TLS on the server of "{alias}", or connect through a proxy that terminates it; '
    "never lower sslmode to hide this.",
    E104: 'Give "{alias}" an sslrootcert the server certificate chains to, make sure no options '
    "override sslmode, and use a driver that honours it.",
    E105: 'Set sslmode for "{alias}" to "require" or stronger and enable TLS on its server.',
    E106: "Create the schema (manage.py dbcheck --create-schemas --database {alias}) or remove it "
    'from the search_path of "{alias}".',
    E107: 'GRANT USAGE ON SCHEMA <schema> TO the user of "{alias}", or remove it from search_path.',
    E108: "Create the schema as a user allowed to (GRANT CREATE ON DATABASE), or remove it from "
    'the search_path of "{alias}".',
    E109: 'Something overrides {setting} of "{alias}": look for options, a connection pooler '
    "that drops startup parameters, or ALTER ROLE/DATABASE ... SET on the server.",
    E110: 'Check read_only of "{alias}" and that no options or pooler override it; a replica '
    "alias is read-only by nature.",
    E111: 'Check that the user of "{alias}" may read the server status views used by dbcheck.',
    W101: 'Set sslmode for "{alias}" to "require" or stronger to make TLS mandatory.',
    W102: "Run manage.py migrate --database {alias} to create it.",
    E201: 'Route {model} to an alias of DATABASES (DBCONFIG_ROUTES or "routes" of dbconfig.json).',
    E202: 'Add DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"] and route {model} to one alias.',
    E203: "Make one router allow {model} to migrate on its own alias.",
}


def problem(check_id: str, message: str, **context: str) -> Problem:
    """A Problem for one of the ids above, its hint filled in with the context."""
    hint = HINTS[check_id].format_map(_Missing(context))
    return Problem("error" if ".E" in check_id else "warning", check_id, message, hint)


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"
