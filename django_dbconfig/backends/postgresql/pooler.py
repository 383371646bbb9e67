"""Behind an external pooler (PgBouncer, RDS Proxy, Supavisor): where session settings go.

Poolers refuse or drop libpq's `options` startup parameter, so with `pooler` set the
PostgreSQL backend renders no `-c` switches. Instead:

- `session`: the engine sends every setting in one `SELECT set_config(...)` when it
  opens a connection (Django's own connection or one of its pool), so they hold for
  the whole client session the pooler keeps on one server connection.
- `transaction`: a SET would hold for one transaction only, so the settings are the
  role's defaults in that database (`ALTER ROLE ... IN DATABASE ... SET ...`), which
  every new server session starts with. `manage.py dbcheck --apply-settings` writes
  them; `dbcheck` reads them back through the pooler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django_dbconfig.backends.postgresql.settings import quote_ident
from django_dbconfig.core.errors import DbConfigError

logger = logging.getLogger(__name__)

SESSION = "session"
TRANSACTION = "transaction"
READ_ONLY_SETTING = "default_transaction_read_only"


def pooler_of(entry: Mapping[str, Any]) -> str | None:
    """The pooler mode of a DATABASES entry (`session`, `transaction`), or None."""
    extra = entry.get("DBCONFIG") or {}
    mode = extra.get("pooler")
    return str(mode) if mode else None


def settings_of(entry: Mapping[str, Any]) -> dict[str, str]:
    """The session settings of an entry behind a pooler, by PostgreSQL's parameter names."""
    extra = entry.get("DBCONFIG") or {}
    return dict(extra.get("session_settings") or {})


def apply_session_settings(connection: Any, entry: Mapping[str, Any]) -> bool:
    """With `pooler: session`, set every session setting on a new connection in one query.

    Returns whether anything was sent (the caller commits when not in autocommit,
    since a rolled-back transaction would undo `set_config`).
    """
    settings = settings_of(entry)
    if pooler_of(entry) != SESSION or not settings:
        return False
    calls = ", ".join("set_config(%s, %s, false)" for _ in settings)
    params = [part for pair in settings.items() for part in pair]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {calls}", params)
    return True


# ---------------------------------------------------------------- transaction mode


def role_default_sql(user: str, dbname: str, name: str, value: str) -> str:
    """`ALTER ROLE user IN DATABASE dbname SET name TO value`, every part quoted."""
    # search_path is already a list of quoted identifiers (backends.postgresql.session_settings):
    # as a single string literal it would be one schema with commas in its name.
    target = value if name == "search_path" else "'" + value.replace("'", "''") + "'"
    return (
        f"ALTER ROLE {quote_ident(user)} IN DATABASE {quote_ident(dbname)} "
        f"SET {quote_ident(name)} TO {target}"
    )


ROLE_DEFAULTS_SQL = """
SELECT unnest(s.setconfig)
FROM pg_db_role_setting s
JOIN pg_database d ON d.oid = s.setdatabase
JOIN pg_roles r ON r.oid = s.setrole
WHERE d.datname = current_database() AND r.rolname = current_user
"""


def read_role_defaults(cursor: Any) -> dict[str, str]:
    """The current role's defaults in the current database, as the server stores them."""
    cursor.execute(ROLE_DEFAULTS_SQL)
    found = {}
    for (item,) in cursor.fetchall():
        name, _, value = str(item).partition("=")
        found[name] = value
    return found


# ---------------------------------------------------------------- configuration checks


def check_shared_roles(
    effective: Mapping[str, Mapping[str, Any]], session: Mapping[str, dict[str, str]]
) -> None:
    """Aliases sharing the role and database of a `pooler: transaction` alias must agree with it.

    Its settings are the role's defaults in that database: another transaction alias
    of the role would get whichever were written last, and any other alias of the role
    (session pooler) starts from them for every setting it does not set itself.
    `session` maps each alias to its settings by PostgreSQL's names. A replica shares
    its primary's role defaults (they replicate), so it counts as its primary's server;
    its read-only mode is the standby's own and is left out.
    """
    groups: dict[tuple[str, ...], list[tuple[str, bool, dict[str, str]]]] = {}
    for alias, values in effective.items():
        pooler = values.get("pooler")
        primary = values.get("replica_of")
        server_values = effective.get(primary.value, values) if primary else values
        wanted = dict(session.get(alias, {}))
        if primary:
            wanted.pop(READ_ONLY_SETTING, None)
        key = (
            str(_value(server_values, "host")),
            str(_value(server_values, "port")),
            str(_value(values, "user")),
            str(_value(values, "name")),
        )
        in_transaction = pooler is not None and pooler.value == TRANSACTION
        groups.setdefault(key, []).append((alias, in_transaction, wanted))
    for (_, _, user, name), members in groups.items():
        owners = [(alias, wanted) for alias, in_transaction, wanted in members if in_transaction]
        if not owners:
            continue
        first_alias, first = owners[0]
        for alias, in_transaction, wanted in members:
            if alias == first_alias:
                continue
            if in_transaction:
                differing = sorted(k for k in {*first, *wanted} if first.get(k) != wanted.get(k))
            else:
                differing = sorted(k for k in first if k not in wanted)
            if not differing:
                continue
            where = f'{effective[first_alias]["pooler"].origin} (alias "{first_alias}")'
            shared = (
                f'with pooler "transaction" the session settings of "{first_alias}" are the role\'s '
                f'defaults in the database, and "{alias}" uses the same role "{user}" on database "{name}"'
            )
            raise DbConfigError(
                f"{where}: {shared}"
                + (
                    f" with different {', '.join(differing)}: each would get the other's."
                    if in_transaction
                    else f": it would start with the role's {', '.join(differing)}."
                )
                + " Give each alias its own role (user), or the same settings."
            )


def _value(values: Mapping[str, Any], key: str) -> Any:
    item = values.get(key)
    return item.value if item is not None else ""
