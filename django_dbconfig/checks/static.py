"""Configuration problems found without a connection, and routing consistency.

The ids and hints are in core/problems.py; docs/checks.md lists them all.
"""

from __future__ import annotations

import logging
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import django
from django.apps import apps
from django.conf import settings
from django.db import router

from django_dbconfig.backends import BACKENDS, families_taking, is_ours, vendor_of
from django_dbconfig.backends.base.settings import installed, is_loopback
from django_dbconfig.backends.mysql.settings import SSLMODE_OF
from django_dbconfig.backends.postgresql.settings import asgi_pool_missing
from django_dbconfig.checks.expected import expected_for
from django_dbconfig.conf.config import DatabaseConfig, last_config
from django_dbconfig.core.problems import (
    E001,
    E002,
    E003,
    E201,
    E202,
    E203,
    W001,
    W002,
    W003,
    W004,
    W005,
    W006,
    W011,
    W012,
    W013,
    W014,
    W201,
    problem,
)
from django_dbconfig.core.report import Problem
from django_dbconfig.runtime.databases import runtime_aliases

logger = logging.getLogger(__name__)

# ASGI servers that may run the checks in their own process (e.g. from asgi.py).
ASGI_SERVERS = ("uvicorn", "daphne", "hypercorn", "granian")

# PostgreSQL's reserved key words (and those reserved except as function or type names):
# a schema named like one of them breaks every unquoted reference to it.
RESERVED_WORDS = frozenset(
    {
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "binary",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "collation",
        "column",
        "concurrently",
        "constraint",
        "create",
        "cross",
        "current_catalog",
        "current_date",
        "current_role",
        "current_schema",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "intersect",
        "into",
        "is",
        "isnull",
        "join",
        "lateral",
        "leading",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "natural",
        "not",
        "notnull",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "overlaps",
        "placing",
        "primary",
        "references",
        "returning",
        "right",
        "select",
        "session_user",
        "similar",
        "some",
        "symmetric",
        "system_user",
        "table",
        "tablesample",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "variadic",
        "verbose",
        "when",
        "where",
        "window",
        "with",
    }
)


# ---------------------------------------------------------------- static problems


def static_problems(databases: Mapping[str, Mapping[str, Any]]) -> list[tuple[str | None, Problem]]:
    """Configuration problems found without a connection: (alias or None, problem)."""

    found: list[tuple[str | None, Problem]] = []
    for alias, entry in databases.items():
        found += [(alias, p) for p in _alias_problems(alias, entry)]
    found += [(None, p) for p in route_target_problems(databases)]
    found += asgi_problems(databases)
    config = last_config()
    if config is not None:
        found += [(None, p) for p in secrets_problems(config.secrets_file, config.base_dir)]
        found += [
            (alias, p)
            for alias, entry in databases.items()
            if alias in config.aliases and config.holds(alias, entry)
            for p in unused_option_problems(config, alias)
        ]
    return found


def unused_option_problems(config: DatabaseConfig, alias: str) -> list[Problem]:
    """W014 for each option of `options` ignored because another layer chose another backend."""
    backend = BACKENDS[config.vendors[alias]]
    found = []
    for row in config.unused(alias):
        if not row.key.startswith("options."):
            continue
        option = row.key.removeprefix("options.")
        owner = " or ".join(families_taking(option)) or "another backend"
        found.append(
            problem(
                W014,
                f'"{alias}" has options.{option} ({row.source}), an option of {owner}; its backend is '
                f"{backend.display} here, so it is ignored.",
                alias=alias,
                option=option,
                source=row.source,
                owner=owner,
                backend=backend.display,
            )
        )
    return found


def deploy_problems(databases: Mapping[str, Mapping[str, Any]], *, debug: bool) -> list[Problem]:
    """W013 when nothing configured `default` and the built-in SQLite file serves it with DEBUG off."""
    config = last_config()
    if debug or config is None or "default" not in config.aliases or "default" not in databases:
        return []
    chosen = config.effective("default").get("backend")
    if chosen is None or str(chosen.origin) != "default" or not config.holds("default", databases["default"]):
        return []
    return [
        problem(
            W013,
            'No source configures the "default" database, so it is the built-in SQLite file '
            f"{databases['default'].get('NAME')}, with DEBUG off. Looked for: DATABASE_URL, "
            "DBCONFIG_DEFAULT_URL, DBCONFIG_DEFAULT_* variables, databases.default in dbconfig.json "
            f"(or DBCONFIG_FILE) and in {config.secrets_file}, and an environment profile (DBCONFIG_ENV).",
        )
    ]


def _missing_pieces(alias: str, vendor: str, entry: Mapping[str, Any]) -> list[Problem]:
    """E002 when the alias's driver is not installed; E003 for pool without psycopg_pool."""

    problems = []
    backend = BACKENDS.get(vendor)
    if backend is not None and not backend.driver_installed():
        modules = " or ".join(backend.driver_modules)
        problems.append(
            problem(
                E002,
                f'"{alias}" needs the {vendor} driver ({modules}), which is not installed.',
                alias=alias,
                install=backend.install,
            )
        )
    if vendor == "postgresql" and (entry.get("OPTIONS") or {}).get("pool") and not installed("psycopg_pool"):
        problems.append(
            problem(
                E003,
                f'"{alias}" has pool set, but psycopg_pool is not installed: the first query would fail.',
                alias=alias,
            )
        )
    return problems


def lost_features(alias: str, entry: Mapping[str, Any]) -> list[str]:
    """What an alias served by another project's engine loses of what its keys ask for.

    Each item names the feature and the key that asked for it, with its value and
    source. Empty for this project's engines, SQLite (served by Django's own engine
    anyway), and entries the configuration did not build (written in settings.py, or
    a test database).
    """
    config = last_config()
    engine = str(entry.get("ENGINE") or "")
    if (
        is_ours(engine)
        or config is None
        or alias not in config.aliases
        or not config.holds(alias, entry)
        or config.vendors[alias] == "sqlite"
    ):
        return []
    rows = {row.key: row for row in config.explain(alias)}
    values = config.values(alias)

    def asked(key: str) -> str:
        row = rows[key]
        return f"{key}: {row.value} ({row.source})"

    lost = []
    if values.get("password_provider"):
        lost.append(
            f"a password from the provider for each new connection, asked by {asked('password_provider')}"
        )
    settings = (entry.get("DBCONFIG") or {}).get("session_settings") or {}
    if values.get("pooler") == "session" and settings:
        lost.append(
            f"the session settings ({', '.join(settings)}) sent as SET behind the pooler, "
            f"asked by {asked('pooler')}"
        )
    if config.vendors[alias] in ("mysql", "mariadb") and values.get("network_timeout"):
        lost.append(f"TCP keepalives and TCP_USER_TIMEOUT on the socket, asked by {asked('network_timeout')}")
    if values.get("conn_health_checks"):
        lost.append(
            "the socket health check (Django's query per request instead), "
            f"asked by {asked('conn_health_checks')}"
        )
    if "asgi_pool" in (entry.get("DBCONFIG") or {}):
        lost.append(
            "the pool of the connections an ASGI request opens (requests would open their own), "
            f"asked by {asked('pool')}"
        )
    if values.get("conn_max_age") != 0 and not (entry.get("OPTIONS") or {}).get("pool"):
        lost.append(
            "the close of the connections an ASGI request opened, at its end (each request "
            f"would leave its connection open), asked by {asked('conn_max_age')}"
        )
    return lost


def _other_engine(alias: str, entry: Mapping[str, Any]) -> list[Problem]:
    lost = lost_features(alias, entry)
    if not lost:
        return []
    listed = "; ".join(f"{number}) {feature}" for number, feature in enumerate(lost, 1))
    return [
        problem(
            W012,
            f'"{alias}" is served by the engine {entry.get("ENGINE")}, not by one of django-dbconfig\'s, '
            f"and loses what its settings ask for: {listed}.",
            alias=alias,
        )
    ]


def _alias_problems(alias: str, entry: Mapping[str, Any]) -> list[Problem]:
    vendor = vendor_of(entry)
    problems = _missing_pieces(alias, vendor, entry)
    problems += _other_engine(alias, entry)
    if vendor != "sqlite" and "CONN_MAX_AGE" in entry and entry["CONN_MAX_AGE"] is None:
        problems.append(
            problem(
                W001,
                f'"{alias}" keeps connections open forever (CONN_MAX_AGE '
                "is None): a server restart or failover leaves them stale.",
                alias=alias,
            )
        )
    host = str(entry.get("HOST") or "")
    mode = _tls_mode(vendor, entry.get("OPTIONS") or {})
    if (
        vendor in ("postgresql", "mysql")
        and not all(is_loopback(name) for name in host.split(","))
        and mode not in ("require", "verify-ca", "verify-full")
    ):
        problems.append(
            problem(
                W002,
                f'"{alias}" connects to {host} with sslmode '
                f"{mode or 'unset'}: credentials and data may cross the "
                "network unencrypted.",
                alias=alias,
            )
        )
    pooler = (entry.get("DBCONFIG") or {}).get("pooler")
    if pooler and (entry.get("OPTIONS") or {}).get("pool"):
        problems.append(
            problem(
                W011,
                f'"{alias}" has both pool and pooler "{pooler}": two pools in a row hold server '
                "connections twice, and the in-process one keeps them busy between requests.",
                alias=alias,
            )
        )
    for schema in _search_path(alias, entry):
        if schema.lower() in RESERVED_WORDS:
            problems.append(
                problem(
                    W005,
                    f'"{alias}" has the reserved word "{schema}" as a schema in its search_path.',
                    alias=alias,
                )
            )
    return problems


def asgi_problems(databases: Mapping[str, Mapping[str, Any]]) -> list[tuple[str | None, Problem]]:
    """W006 for each PostgreSQL alias whose ASGI requests each open a connection, when served by ASGI.

    Under ASGI no request reuses another's connection (each runs in its own context):
    the default `pool: "asgi"` pools them. An alias loses that with `pool: false` and
    persistent connections, or where the pool cannot be had (Django before 5.1,
    psycopg2, no psycopg_pool). MySQL/MariaDB have no pool in Django: their
    per-request connections are the documented default there, and no setting of the
    alias would do better (docs/configuration.md, ASGI).
    """
    served_by = _asgi_in_use()
    if served_by is None:
        return []
    found: list[tuple[str | None, Problem]] = []
    for alias, entry in databases.items():
        if vendor_of(entry) != "postgresql" or (entry.get("OPTIONS") or {}).get("pool"):
            continue
        age = entry.get("CONN_MAX_AGE", 0)
        kept = "forever" if age is None else f"for {age} s"
        if "asgi_pool" in (entry.get("DBCONFIG") or {}):
            missing = asgi_pool_missing((django.VERSION[0], django.VERSION[1]))
            if missing is None:
                continue
            needed, fix = missing
            message = (
                f'"{alias}" has pool "asgi", but this process cannot pool: it needs {needed}. The '
                f"project is served by ASGI ({served_by}): each request opens its own connection."
            )
        elif age == 0:
            continue  # a connection per request, as asked
        else:
            message = (
                f'"{alias}" keeps connections {kept} without a pool, and the project is served by '
                f"ASGI ({served_by}): no request reuses another's connection, so each opens its own."
            )
            fix = f'Remove pool: false from "{alias}" (its default pools ASGI requests\' connections).'
        found.append((alias, problem(W006, message, fix=fix)))
    return found


def _asgi_in_use() -> str | None:
    """What shows that the project is served by ASGI, or None."""

    if getattr(settings, "ASGI_APPLICATION", None):
        return "ASGI_APPLICATION is set"
    server = next((name for name in ASGI_SERVERS if name in sys.modules), None)
    return f"{server} runs this process" if server else None


def _tls_mode(vendor: str, options: Mapping[str, Any]) -> str | None:
    if vendor == "postgresql":
        return options.get("sslmode")

    return SSLMODE_OF.get(str(options.get("ssl_mode", "")).upper())


def _search_path(alias: str, entry: Mapping[str, Any]) -> tuple[str, ...]:
    return expected_for(alias, entry).search_path or ()


def route_target_problems(databases: Mapping[str, Any]) -> list[Problem]:
    """E001 for every route (DBCONFIG_ROUTES or the config's routes) to an unknown alias."""

    routes: Mapping[str, str] | None = getattr(settings, "DBCONFIG_ROUTES", None)
    if routes is None:
        config = last_config()
        routes = config.routes if config is not None else {}
    return [
        problem(E001, f'The route "{route}" goes to "{alias}", which is not in DATABASES.', alias=str(alias))
        for route, alias in routes.items()
        if alias not in databases
    ]


def secrets_problems(secrets_file: Path, base_dir: Path) -> list[Problem]:
    """W003 when the secrets file is open to group or others; W004 when git would commit it."""
    problems = []
    try:
        mode = secrets_file.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(
            problem(
                W003,
                f"The secrets file {secrets_file} is readable or writable by "
                f"group or others (mode {stat.S_IMODE(mode):o}).",
                path=str(secrets_file),
            )
        )
    if secrets_file.parent.exists() and _git_would_track(secrets_file, base_dir):
        problems.append(
            problem(
                W004,
                f"{secrets_file.parent} is not ignored by git: its passwords would be committed.",
                path=str(base_dir),
            )
        )
    return problems


def _git_would_track(path: Path, base_dir: Path) -> bool:
    """True when base_dir is in a git work tree and git does not ignore `path`."""
    git = shutil.which("git")
    if git is None or not base_dir.is_dir():
        return False
    try:
        result = subprocess.run(
            [git, "-C", str(base_dir), "check-ignore", "-q", str(path)],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    # 0: ignored; 1: not ignored (or tracked); 128: not a repository, nothing to say.
    return result.returncode == 1


# ---------------------------------------------------------------- routing


def configured_aliases(settings: Iterable[str]) -> list[str]:
    """The aliases of DATABASES, without runtime ones.

    A runtime alias (a tenant) copies the models of the alias it is like, so
    routing consistency is checked without them.
    """

    added = runtime_aliases()
    return [alias for alias in settings if alias not in added]


def routing_problems(aliases: Sequence[str]) -> list[Problem]:
    """Every model's alias exists, and with a router each model may migrate on exactly one alias.

    Without DATABASE_ROUTERS every model migrates on every alias: a legal Django setup,
    so one warning, not an error per model. Each inconsistency is one problem listing its models.
    """

    known = set(aliases)
    models = [
        model
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy and not model._meta.swapped
    ]
    unknown_target: dict[str, list[str]] = {}
    placed: list[tuple[str, list[str]]] = []
    for model in models:
        target = router.db_for_write(model)
        if target not in known:
            unknown_target.setdefault(str(target), []).append(model._meta.label)
        else:
            allowed = [alias for alias in aliases if router.allow_migrate_model(alias, model)]
            placed.append((model._meta.label, allowed))
    problems = [
        problem(
            E201,
            f'{_models(labels)} {"is" if len(labels) == 1 else "are"} routed to "{target}", '
            "which is not in DATABASES.",
            model=_models(labels),
        )
        for target, labels in unknown_target.items()
    ]
    if not getattr(settings, "DATABASE_ROUTERS", None):
        if len(aliases) > 1 and placed:
            problems.append(
                problem(
                    W201,
                    f"DATABASE_ROUTERS is empty: every model ({len(placed)}) migrates on every alias "
                    f"({', '.join(aliases)}).",
                )
            )
        return problems
    several: dict[tuple[str, ...], list[str]] = {}
    nowhere: list[str] = []
    for label, allowed in placed:
        if len(allowed) > 1:
            several.setdefault(tuple(allowed), []).append(label)
        elif not allowed:
            nowhere.append(label)
    for where, labels in several.items():
        problems.append(
            problem(
                E202,
                f"{_models(labels)} may migrate on {len(where)} aliases ({', '.join(where)}); "
                "each model must have exactly one.",
                model=_models(labels),
            )
        )
    if nowhere:
        problems.append(problem(E203, f"{_models(nowhere)} may migrate on no alias.", model=_models(nowhere)))
    return problems


def _models(labels: Sequence[str], *, shown: int = 10) -> str:
    """Model labels as a list, the long tail counted rather than printed."""
    text = ", ".join(labels[:shown])
    return text if len(labels) <= shown else f"{text} and {len(labels) - shown} more"
