"""The keys an alias accepts: their types, how text becomes a value, and which are secret.

Every source hands raw values to `Key.coerce`, which returns the normalised
value or raises ValueError with a message saying what was expected. The
source adds where the value came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django_dbconfig.core.durations import parse_duration
from django_dbconfig.core.errors import did_you_mean, one_of, quoted, shown

BACKENDS = ("postgresql", "mysql", "mariadb", "sqlite")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq's choices for several hosts.
TARGET_SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
LOAD_BALANCE_HOSTS = ("disable", "random")
POOLERS = ("session", "transaction")

# How deep objects may nest (a document, or the `options` of an alias): far more
# than any setting needs, far less than would exhaust the stack.
MAX_DEPTH = 32


class PlainValueError(ValueError):
    """A coercion problem whose message never contains the value: safe for secrets."""


# The longest an idle persistent connection may be kept, in seconds. Longer
# values are almost always a unit mistake; None (no limit) is allowed.
MAX_CONN_MAX_AGE = 86_400


def _text(value: object, *, from_env: bool) -> str:
    if not isinstance(value, str):
        raise PlainValueError(f"expected a string, got {_kind(value)}")
    if "\x00" in value:
        raise PlainValueError("contains a NUL character, which no database driver accepts")
    return value


def _nonempty(value: object, *, from_env: bool) -> str:
    text = _text(value, from_env=from_env)
    if not text.strip():
        raise PlainValueError("expected a non-empty string")
    return text


def _password(value: object, *, from_env: bool) -> str | None:
    # null unsets a password set in a lower layer (e.g. for an alias a profile moved to SQLite).
    return None if value is None and not from_env else _text(value, from_env=from_env)


def _bool(value: object, *, from_env: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true or false (also 1/0, yes/no, on/off), got {quoted(value)}")
    raise ValueError(f"expected true or false, got {_kind(value)}")


def _hosts(value: object, *, from_env: bool) -> str | tuple[str, ...]:
    """One host, or several (a list, or text separated by commas) for PostgreSQL's failover."""
    items = value if isinstance(value, list) else None
    if items is None:
        text = _text(value, from_env=from_env)
        if "," not in text:
            return text
        items = text.split(",")
    hosts = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ValueError(
                'expected every host of the list to be a non-empty string, e.g. ["pg-a", "pg-b"]'
            )
        hosts.append(item.strip())
    if not hosts:
        raise ValueError('expected a host or a non-empty list of hosts, e.g. ["pg-a", "pg-b"]')
    return hosts[0] if len(hosts) == 1 else tuple(hosts)


def _ports(value: object, *, from_env: bool) -> int | tuple[int, ...]:
    """One port, or one per host (a list, or text separated by commas)."""
    if isinstance(value, list) or (isinstance(value, str) and "," in value):
        items = value if isinstance(value, list) else value.split(",")
        ports = tuple(_port(item.strip() if isinstance(item, str) else item, from_env=True) for item in items)
        if not ports:
            raise ValueError("expected a port or a non-empty list of ports, one per host")
        return ports[0] if len(ports) == 1 else ports
    return _port(value, from_env=from_env)


def _int_from(value: object, *, from_env: bool) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(value, int):
        return value
    if from_env and isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.lstrip("+-").isdigit() and len(text) <= 20):
            raise ValueError(f"expected a whole number, got {quoted(value)}")
        return int(text)
    raise ValueError(f"expected a whole number, got {_kind(value)}")


def _port(value: object, *, from_env: bool) -> int:
    port = _int_from(value, from_env=from_env)
    if not 1 <= port <= 65535:
        raise ValueError(f"expected a port from 1 to 65535, got {shown(port)}")
    return port


def _conn_max_age(value: object, *, from_env: bool) -> int | None:
    if value is None or (from_env and isinstance(value, str) and value.strip().lower() in {"null", "none"}):
        return None
    seconds = _int_from(value, from_env=from_env)
    if not 0 <= seconds <= MAX_CONN_MAX_AGE:
        raise ValueError(
            f"expected seconds from 0 to {MAX_CONN_MAX_AGE}, or null for no limit, got {shown(seconds)}"
        )
    return seconds


def _duration(value: object, *, from_env: bool) -> int:
    if from_env and isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 20:
        return parse_duration(int(value.strip()))
    return parse_duration(value)


def _duration_or_null(value: object, *, from_env: bool) -> int | None:
    if value is None or (from_env and isinstance(value, str) and value.strip().lower() in {"null", "none"}):
        return None
    return _duration(value, from_env=from_env)


def _network_timeout(value: object, *, from_env: bool) -> int | None:
    if value is None or (from_env and isinstance(value, str) and value.strip().lower() in {"null", "none"}):
        return None
    ms = _duration(value, from_env=from_env)
    if ms < 1000:
        # TCP keepalives count whole seconds; 0 would mean "the system default".
        raise ValueError(f"expected a duration of at least 1s, or null to turn it off, got {value!r}")
    return ms


def _choice(choices: tuple[str, ...]) -> Callable[..., str]:
    def coerce(value: object, *, from_env: bool) -> str:
        text = _text(value, from_env=from_env).strip().lower()
        if text not in choices:
            raise ValueError(
                f"{quoted(str(value))} is not one of {one_of(choices)}.{did_you_mean(text, choices)}"
            )
        return text

    return coerce


def _backend(value: object, *, from_env: bool) -> str:
    aliases = {"postgres": "postgresql", "pgsql": "postgresql", "sqlite3": "sqlite"}
    if isinstance(value, str) and value.strip().lower() in aliases:
        return aliases[value.strip().lower()]
    return _choice(BACKENDS)(value, from_env=from_env)


def _schema_list(value: object, *, from_env: bool) -> tuple[str, ...]:
    if from_env and isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list) or not value:
        raise ValueError(
            f'expected a non-empty list of schema names, e.g. ["app", "public"], got {_kind(value)}'
        )
    names = []
    for name in value:
        if not isinstance(name, str) or not name:
            raise ValueError("expected every schema name to be a non-empty string")
        if "\x00" in name:
            raise ValueError("a schema name cannot contain a NUL character")
        if any(ord(char) < 32 or ord(char) == 127 for char in name):
            # The server refuses them in search_path at connect time; say so at build time.
            raise ValueError(
                f"schema name {shown(name[:20])} contains a control character (a tab or a new line?): "
                "remove it"
            )
        if len(name.encode()) > 63:
            raise ValueError(f"schema name {shown(name[:20])} is longer than 63 bytes")
        names.append(name)
    return tuple(names)


def _object(value: object, *, from_env: bool) -> dict[str, Any]:
    if from_env and isinstance(value, str):
        import json  # only for variables holding JSON: not on the path of every settings.py

        try:
            value = json.loads(value, object_pairs_hook=unique_keys)
        except (ValueError, RecursionError) as exc:
            # A duplicate key's name is shown; nothing else of the text, which may hold a secret.
            problem = str(exc) if isinstance(exc, PlainValueError) else 'e.g. {"key": "value"}'
            raise PlainValueError(f"expected a JSON object ({problem})") from None
    if not isinstance(value, dict):
        raise PlainValueError(f"expected an object, got {_kind(value)}")
    _check_entries(value)
    return dict(value)


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a key given twice in one object is an error, not a silent overwrite."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise PlainValueError(f"the key {shown(key)} appears twice in one object; keep one")
        result[key] = value
    return result


def _check_entries(value: Mapping[str, Any]) -> None:
    """Option names are strings; no string holds a NUL; nesting is bounded (cycles too)."""
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise PlainValueError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, str) and "\x00" in item:
            raise PlainValueError("contains a NUL character, which no database driver accepts")
        if isinstance(item, Mapping):
            for key in item:
                if not isinstance(key, str):
                    raise PlainValueError(f"every option name must be a string, got {_kind(key)}")
                if "\x00" in key:
                    raise PlainValueError("an option name contains a NUL character")
            pending.extend((entry, depth + 1) for entry in item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend((entry, depth + 1) for entry in item)


def _bool_or_object(value: object, *, from_env: bool) -> bool | dict[str, Any]:
    if isinstance(value, dict) or (from_env and isinstance(value, str) and value.lstrip().startswith("{")):
        return _object(value, from_env=from_env)
    return _bool(value, from_env=from_env)


# What `migrate` may change: how to reach and log in to the same database, and the
# session's limits. Not which database, schema path or backend: the tables must land
# where the application reads them.
MIGRATE_KEYS = (
    "host",
    "port",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "application_name",
)


def _migrate(value: object, *, from_env: bool) -> dict[str, Any]:
    """An object of alias keys for `manage.py migrate`, each read as the key itself is."""
    settings = _object(value, from_env=from_env)
    coerced = {}
    for name, item in settings.items():
        if name not in MIGRATE_KEYS:
            raise ValueError(
                f'"{name}" cannot be set for migrate: it takes {", ".join(MIGRATE_KEYS)} (the same '
                "database, reached with other credentials)." + did_you_mean(name, MIGRATE_KEYS)
            )
        try:
            coerced[name] = KEYS[name].coerce(item, from_env=from_env)
        except ValueError as exc:
            problem = (
                f"expected a string (the value is not shown: {name} is secret)" if KEYS[name].secret else exc
            )
            raise ValueError(f"{name}: {problem}") from None
    return coerced


def _alias_name(value: object, *, from_env: bool) -> str:
    return _nonempty(value, from_env=from_env).strip()


def _engine(value: object, *, from_env: bool) -> str:
    # A short name ("postgis") selects one of this project's engines; the backends know
    # which exist, and the alias's validation refuses an unknown one.
    text = _nonempty(value, from_env=from_env).strip()
    if not all(part.isidentifier() for part in text.split(".")):
        raise ValueError(
            'expected a short name such as "postgis", or a dotted module path such as '
            f'"django_prometheus.db.backends.postgresql", got {shown(text)}'
        )
    return text


def _pooler(value: object, *, from_env: bool) -> str | None:
    if value is None:
        return None
    if from_env and isinstance(value, str) and value.strip().lower() in {"null", "none", ""}:
        return None
    return _choice(POOLERS)(value, from_env=from_env)


# wsrep_sync_wait is a bit mask (1 reads, 2 updates and deletes, 4 inserts and replaces,
# 8 SHOW); MariaDB 10.11 accepts 0 to 15.
MAX_SYNC_WAIT = 15


def _sync_wait(value: object, *, from_env: bool) -> int:
    mask = _int_from(value, from_env=from_env)
    if not 0 <= mask <= MAX_SYNC_WAIT:
        raise ValueError(
            f"expected Galera's mask from 0 to {MAX_SYNC_WAIT} (1: reads wait for "
            f"the writes the cluster committed before them), got {shown(mask)}"
        )
    return mask


def _cluster_size(value: object, *, from_env: bool) -> int:
    size = _int_from(value, from_env=from_env)
    if size < 1:
        raise ValueError(f"expected the number of nodes of the Galera cluster (1 or more), got {shown(size)}")
    return size


def _dotted_callable(value: object, *, from_env: bool) -> str:
    text = _nonempty(value, from_env=from_env).strip()
    if "." not in text or not all(part.isidentifier() for part in text.split(".")):
        raise ValueError(f'expected the dotted path of a callable such as "myproject.db.token", got "{text}"')
    return text


def _kind(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


# How a secret is shown, wherever it is shown.
MASK = "********"


@dataclass(frozen=True)
class Key:
    """One key of an alias: how to read it and whether it is secret."""

    name: str
    coerce: Callable[..., Any]
    secret: bool = False
    # Connection parts describe which server to reach; a URL or backend
    # change in a higher layer replaces all of them from lower layers.
    connection: bool = False
    # Where the value is a path relative to base_dir.
    path: bool = False


_KEYS = (
    Key("url", _nonempty, secret=True),
    Key("backend", _backend, connection=True),
    Key("engine", _engine, connection=True),
    Key("host", _hosts, connection=True),
    Key("port", _ports, connection=True),
    Key("name", _nonempty, connection=True),
    Key("user", _text, connection=True),
    Key("password", _password, secret=True, connection=True),
    Key("conn_max_age", _conn_max_age),
    Key("conn_health_checks", _bool),
    Key("pool", _bool_or_object),
    Key("sslmode", _choice(SSLMODES)),
    Key("sslrootcert", _nonempty, path=True),
    Key("sslcert", _nonempty, path=True),
    Key("sslkey", _nonempty, path=True),
    Key("search_path", _schema_list),
    Key("statement_timeout", _duration),
    Key("lock_timeout", _duration),
    Key("idle_in_transaction_session_timeout", _duration),
    Key("connect_timeout", _duration_or_null),
    Key("application_name", _nonempty),
    Key("read_only", _bool),
    Key("replica_of", _alias_name),
    Key("atomic_requests", _bool),
    Key("autocommit", _bool),
    Key("time_zone", _nonempty),
    Key("disable_server_side_cursors", _bool),
    Key("test", _object),
    Key("options", _object),
    Key("pooler", _pooler),
    Key("password_provider", _dotted_callable),
    Key("migrate", _migrate),
    Key("max_replica_lag", _duration),
    Key("target_session_attrs", _choice(TARGET_SESSION_ATTRS), connection=True),
    Key("load_balance_hosts", _choice(LOAD_BALANCE_HOSTS), connection=True),
    Key("network_timeout", _network_timeout),
    Key("wsrep_sync_wait", _sync_wait),
    Key("galera_cluster_size", _cluster_size),
)

KEYS: Mapping[str, Key] = {key.name: key for key in _KEYS}
CONNECTION_KEYS = frozenset(key.name for key in _KEYS if key.connection)
OBJECT_KEYS = frozenset({"options", "test", "migrate"})
DURATION_KEYS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "connect_timeout",
    "max_replica_lag",
    "network_timeout",
)

# Option names whose values are masked wherever options are shown.
SECRET_OPTION_WORDS = ("password", "passwd", "secret", "token", "passphrase")


def is_secret_option(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_OPTION_WORDS)
