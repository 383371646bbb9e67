"""System checks: static ones for `manage.py check`, live ones under `check --database`.

Every id is a constant here with its hint, an instruction; docs/checks.md lists them all.
The static checks open no connection.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from django.core.checks import CheckMessage, Error, Warning

from .report import Problem

logger = logging.getLogger(__name__)

# Static: configuration, no connection.
E001 = "dbconfig.E001"
W001 = "dbconfig.W001"
W002 = "dbconfig.W002"
W003 = "dbconfig.W003"
W004 = "dbconfig.W004"
W005 = "dbconfig.W005"
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
    E101: 'Check host, port, user and password of "{alias}" and that the server accepts '
          "connections from this machine.",
    E102: 'The server of "{alias}" accepted nothing within the timeout: check host and port, '
          "firewalls, and connect_timeout (or --timeout).",
    E103: 'Enable TLS on the server of "{alias}", or connect through a proxy that terminates it; '
          "never lower sslmode to hide this.",
    E104: 'Give "{alias}" an sslrootcert the server certificate chains to, make sure no options '
          "override sslmode, and use a driver that honours it.",
    E105: 'Set sslmode for "{alias}" to "require" or stronger and enable TLS on its server.',
    E106: 'Create the schema (manage.py dbcheck --create-schemas --database {alias}) or remove it '
          'from the search_path of "{alias}".',
    E107: 'GRANT USAGE ON SCHEMA <schema> TO the user of "{alias}", or remove it from search_path.',
    E108: 'Create the schema as a user allowed to (GRANT CREATE ON DATABASE), or remove it from '
          'the search_path of "{alias}".',
    E109: 'Something overrides {setting} of "{alias}": look for options, a connection pooler '
          "that drops startup parameters, or ALTER ROLE/DATABASE ... SET on the server.",
    E110: 'Check read_only of "{alias}" and that no options or pooler override it; a replica '
          "alias is read-only by nature.",
    E111: 'Check that the user of "{alias}" may read the server status views used by dbcheck.',
    W101: 'Set sslmode for "{alias}" to "require" or stronger to make TLS mandatory.',
    W102: 'Run manage.py migrate --database {alias} to create it.',
    E201: 'Route {model} to an alias of DATABASES (DBCONFIG_ROUTES or "routes" of dbconfig.json).',
    E202: 'Add DATABASE_ROUTERS = ["django_dbconfig.routers.DatabaseRouter"] and route {model} '
          "to one alias.",
    E203: "Make one router allow {model} to migrate on its own alias.",
}

LOOPBACK_HOSTS = frozenset({"", "localhost", "localhost.localdomain"})

# PostgreSQL's reserved key words (and those reserved except as function or type names):
# a schema named like one of them breaks every unquoted reference to it.
RESERVED_WORDS = frozenset({
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric",
    "authorization", "binary", "both", "case", "cast", "check", "collate", "collation",
    "column", "concurrently", "constraint", "create", "cross", "current_catalog",
    "current_date", "current_role", "current_schema", "current_time", "current_timestamp",
    "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except",
    "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant", "group", "having",
    "ilike", "in", "initially", "inner", "intersect", "into", "is", "isnull", "join", "lateral",
    "leading", "left", "like", "limit", "localtime", "localtimestamp", "natural", "not",
    "notnull", "null", "offset", "on", "only", "or", "order", "outer", "overlaps", "placing",
    "primary", "references", "returning", "right", "select", "session_user", "similar", "some",
    "symmetric", "system_user", "table", "tablesample", "then", "to", "trailing", "true",
    "union", "unique", "user", "using", "variadic", "verbose", "when", "where", "window", "with",
})


def problem(check_id: str, message: str, **context: str) -> Problem:
    """A Problem for one of the ids above, its hint filled in with the context."""
    hint = HINTS[check_id].format_map(_Missing(context))
    return Problem("error" if ".E" in check_id else "warning", check_id, message, hint)


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"


# ---------------------------------------------------------------- static problems


def static_problems(databases: Mapping[str, Mapping[str, Any]]) -> list[tuple[str | None, Problem]]:
    """Configuration problems found without a connection: (alias or None, problem)."""
    from .config import last_config

    found: list[tuple[str | None, Problem]] = []
    for alias, entry in databases.items():
        found += [(alias, p) for p in _alias_problems(alias, entry)]
    found += [(None, p) for p in route_target_problems(databases)]
    config = last_config()
    if config is not None:
        found += [(None, p) for p in secrets_problems(config.secrets_file, config.base_dir)]
    return found


def _alias_problems(alias: str, entry: Mapping[str, Any]) -> list[Problem]:
    from .probes import vendor_of

    problems = []
    vendor = vendor_of(entry)
    if vendor != "sqlite" and "CONN_MAX_AGE" in entry and entry["CONN_MAX_AGE"] is None:
        problems.append(problem(W001, f'"{alias}" keeps connections open forever (CONN_MAX_AGE '
                                      "is None): a server restart or failover leaves them stale.",
                                alias=alias))
    host = str(entry.get("HOST") or "")
    mode = _tls_mode(vendor, entry.get("OPTIONS") or {})
    if vendor in ("postgresql", "mysql") and not _is_loopback(host) and mode not in (
            "require", "verify-ca", "verify-full"):
        problems.append(problem(W002, f'"{alias}" connects to {host} with sslmode '
                                      f"{mode or 'unset'}: credentials and data may cross the "
                                      "network unencrypted.", alias=alias))
    for schema in _search_path(alias, entry):
        if schema.lower() in RESERVED_WORDS:
            problems.append(problem(W005, f'"{alias}" has the reserved word "{schema}" as a '
                                          "schema in its search_path.", alias=alias))
    return problems


def _tls_mode(vendor: str, options: Mapping[str, Any]) -> str | None:
    if vendor == "postgresql":
        return options.get("sslmode")
    from .backends.mysql import SSLMODE_OF

    return SSLMODE_OF.get(str(options.get("ssl_mode", "")).upper())


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS or host.startswith("/"):
        return True  # no host or a Unix socket directory never leaves the machine
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _search_path(alias: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
    from .probes import expected_for

    return expected_for(alias, entry).search_path or ()


def route_target_problems(databases: Mapping[str, Any]) -> list[Problem]:
    """E001 for every route (DBCONFIG_ROUTES or the config's routes) to an unknown alias."""
    from django.conf import settings

    from .config import last_config

    routes: Mapping[str, str] | None = getattr(settings, "DBCONFIG_ROUTES", None)
    if routes is None:
        config = last_config()
        routes = config.routes if config is not None else {}
    return [problem(E001, f'The route "{route}" goes to "{alias}", which is not in DATABASES.',
                    alias=str(alias))
            for route, alias in routes.items() if alias not in databases]


def secrets_problems(secrets_file: Path, base_dir: Path) -> list[Problem]:
    """W003 when the secrets file is open to group or others; W004 when git would commit it."""
    problems = []
    try:
        mode = secrets_file.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(problem(W003, f"The secrets file {secrets_file} is readable or writable by "
                                      f"group or others (mode {stat.S_IMODE(mode):o}).",
                                path=str(secrets_file)))
    if secrets_file.parent.exists() and _git_would_track(secrets_file, base_dir):
        problems.append(problem(W004, f"{secrets_file.parent} is not ignored by git: its passwords "
                                      "would be committed.", path=str(base_dir)))
    return problems


def _git_would_track(path: Path, base_dir: Path) -> bool:
    """True when base_dir is in a git work tree and git does not ignore `path`."""
    git = shutil.which("git")
    if git is None or not base_dir.is_dir():
        return False
    try:
        result = subprocess.run([git, "-C", str(base_dir), "check-ignore", "-q", str(path)],
                                capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    # 0: ignored; 1: not ignored (or tracked); 128: not a repository, nothing to say.
    return result.returncode == 1


# ---------------------------------------------------------------- routing


def routing_problems(aliases: Sequence[str]) -> list[Problem]:
    """Every model's alias exists, and each model may migrate on exactly one alias."""
    from django.apps import apps
    from django.db import router

    problems = []
    known = set(aliases)
    for model in apps.get_models():
        meta = model._meta
        if not meta.managed or meta.proxy or meta.swapped:
            continue
        label = meta.label
        target = router.db_for_write(model)
        if target not in known:
            problems.append(problem(E201, f'{label} is routed to "{target}", which is not in '
                                          "DATABASES.", model=label))
            continue
        allowed = [alias for alias in aliases if router.allow_migrate_model(alias, model)]
        if len(allowed) > 1:
            problems.append(problem(E202, f"{label} may migrate on {len(allowed)} aliases "
                                          f"({', '.join(allowed)}); it must have exactly one.",
                                    model=label))
        elif not allowed:
            problems.append(problem(E203, f"{label} may migrate on no alias.", model=label))
    return problems


# ---------------------------------------------------------------- Django checks


def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Static checks of every alias: no connection is opened."""
    from django.db import connections

    return [_message(p, None) for _, p in static_problems(connections.settings)]


def check_live(app_configs: Any = None, databases: Iterable[str] | None = None,
               **kwargs: Any) -> list[CheckMessage]:
    """The checks of dbcheck against the servers of `check --database ALIAS`."""
    if databases is None:
        return []
    from .probes import probe_aliases

    report = probe_aliases(list(databases), include_static=False)
    messages = [_message(p, db.alias) for db in report.databases for p in db.problems]
    return messages + [_message(p, None) for p in report.problems]


def _message(found: Problem, alias: str | None) -> CheckMessage:
    cls = Error if found.level == "error" else Warning
    text = f'Database "{alias}": {found.message}' if alias else found.message
    return cls(text, hint=found.hint or None, id=found.id)
