"""`dbcheck --apply-settings`: a `pooler: transaction` alias's session settings as its role's defaults.

The SQL and what it means are PostgreSQL's (`backends/postgresql/pooler.py`); this
module opens the administrative connection that writes them.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.utils import load_backend

from django_dbconfig.backends import vendor_of
from django_dbconfig.backends.base.probe import scrub, secrets_of
from django_dbconfig.backends.postgresql.pooler import TRANSACTION, pooler_of, role_default_sql, settings_of
from django_dbconfig.operations.admin import admin_settings as migrate_settings
from django_dbconfig.operations.admin import over

logger = logging.getLogger(__name__)


def admin_settings(alias: str) -> dict[str, Any]:
    """The DATABASES entry `--apply-settings` connects with.

    The alias's `migrate` keys over its own (the owner role, maybe a direct host that
    bypasses the pooler), else the alias's own settings. The role whose defaults are
    written is always the alias's own user, whoever connects.
    """
    entry = connections.settings[alias]
    admin = migrate_settings(alias)
    return copy.deepcopy(over(entry, admin) if admin is not None else dict(entry))


@dataclass(frozen=True)
class Applied:
    """What `--apply-settings` did for one alias: the statements it ran, or why none."""

    alias: str
    statements: tuple[str, ...] = ()
    skipped: str | None = None
    error: str | None = None


def apply_role_defaults(alias: str) -> Applied:
    """Write the session settings of a `pooler: transaction` alias as its role's defaults."""
    entry = connections.settings[alias]
    if pooler_of(entry) != TRANSACTION:
        return Applied(alias, skipped="not behind a transaction pooler: nothing to write")
    if vendor_of(entry) != "postgresql":
        return Applied(alias, skipped="MySQL/MariaDB have no per-role session defaults: nothing to write")
    primary = (entry.get("TEST") or {}).get("MIRROR")
    if primary:
        return Applied(
            alias,
            skipped=f'a replica gets its role\'s defaults from its primary: run it for "{primary}"',
        )
    settings = settings_of(entry)
    if not settings:
        return Applied(alias, skipped="no session settings configured")
    user, dbname = str(entry.get("USER") or ""), str(entry.get("NAME") or "")
    statements = tuple(role_default_sql(user, dbname, name, value) for name, value in settings.items())
    admin = admin_settings(alias)
    admin.setdefault("OPTIONS", {}).pop("pool", None)
    try:
        wrapper = load_backend(admin["ENGINE"]).DatabaseWrapper(admin, alias)
        connection = wrapper.get_new_connection(wrapper.get_connection_params())
    except Exception as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", secrets_of(admin))
        return Applied(
            alias, error=f"--apply-settings could not connect to write the role's defaults: {message}"
        )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                logger.info("dbcheck --apply-settings: %s: %s", alias, statement)
            if pooler_of(admin) == TRANSACTION:
                # This server session began before the new defaults: end it, so the
                # pooler opens a fresh one instead of lending this one out again.
                _end_own_server_session(cursor)
    except Exception as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", secrets_of(admin))
        return Applied(alias, error=f"--apply-settings could not write the role's defaults: {message}")
    finally:
        try:
            connection.close()
        except Exception:
            logger.debug("closing the --apply-settings connection of %s failed", alias, exc_info=True)
    return Applied(alias, statements=statements)


def _end_own_server_session(cursor: Any) -> None:
    try:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    except Exception:
        # The expected outcome: the server ended the session under the query.
        logger.debug("the server session of --apply-settings ended", exc_info=True)
