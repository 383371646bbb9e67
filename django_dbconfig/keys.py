"""The keys an alias accepts: their types, how text becomes a value, and which are secret.

Every source hands raw values to `Key.coerce`, which returns the normalised
value or raises ValueError with a message saying what was expected. The
source adds where the value came from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .durations import parse_duration
from .errors import did_you_mean, one_of

BACKENDS = ("postgresql", "mysql", "mariadb", "sqlite")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# The longest an idle persistent connection may be kept, in seconds. Longer
# values are almost always a unit mistake; None (no limit) is allowed.
MAX_CONN_MAX_AGE = 86_400


def _text(value: object, *, from_env: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_kind(value)}")
    return value


def _nonempty(value: object, *, from_env: bool) -> str:
    text = _text(value, from_env=from_env)
    if not text.strip():
        raise ValueError("expected a non-empty string")
    return text


def _bool(value: object, *, from_env: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_env and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f'expected true or false (also 1/0, yes/no, on/off), got "{value}"')
    raise ValueError(f"expected true or false, got {_kind(value)}")


def _int_from(value: object, *, from_env: bool) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(value, int):
        return value
    if from_env and isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f'expected a whole number, got "{value}"') from None
    raise ValueError(f"expected a whole number, got {_kind(value)}")


def _port(value: object, *, from_env: bool) -> int:
    port = _int_from(value, from_env=from_env)
    if not 1 <= port <= 65535:
        raise ValueError(f"expected a port from 1 to 65535, got {port}")
    return port


def _conn_max_age(value: object, *, from_env: bool) -> int | None:
    if value is None or (from_env and isinstance(value, str) and value.strip().lower() in {"null", "none"}):
        return None
    seconds = _int_from(value, from_env=from_env)
    if not 0 <= seconds <= MAX_CONN_MAX_AGE:
        raise ValueError(
            f"expected seconds from 0 to {MAX_CONN_MAX_AGE}, or null for no limit, got {seconds}"
        )
    return seconds


def _duration(value: object, *, from_env: bool) -> int:
    if from_env and isinstance(value, str) and value.strip().isdigit():
        return parse_duration(int(value.strip()))
    return parse_duration(value)


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
            raise ValueError(f'"{value}" is not one of {one_of(choices)}.{did_you_mean(text, choices)}')
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
        if len(name.encode()) > 63:
            raise ValueError(f'schema name "{name[:20]}..." is longer than 63 bytes')
        names.append(name)
    return tuple(names)


def _object(value: object, *, from_env: bool) -> dict[str, Any]:
    if from_env and isinstance(value, str):
        import json  # only for variables holding JSON: not on the path of every settings.py

        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError('expected a JSON object, e.g. {"key": "value"}') from None
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {_kind(value)}")
    return dict(value)


def _bool_or_object(value: object, *, from_env: bool) -> bool | dict[str, Any]:
    if isinstance(value, dict) or (from_env and isinstance(value, str) and value.lstrip().startswith("{")):
        return _object(value, from_env=from_env)
    return _bool(value, from_env=from_env)


def _alias_name(value: object, *, from_env: bool) -> str:
    return _nonempty(value, from_env=from_env).strip()


def _engine(value: object, *, from_env: bool) -> str:
    text = _nonempty(value, from_env=from_env).strip()
    if "." not in text or " " in text:
        raise ValueError(
            f'expected a dotted module path such as "django.contrib.gis.db.backends.postgis", got "{text}"'
        )
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
    Key("host", _text, connection=True),
    Key("port", _port, connection=True),
    Key("name", _nonempty, connection=True),
    Key("user", _text, connection=True),
    Key("password", _text, secret=True, connection=True),
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
    Key("connect_timeout", _duration),
    Key("application_name", _nonempty),
    Key("read_only", _bool),
    Key("replica_of", _alias_name),
    Key("atomic_requests", _bool),
    Key("autocommit", _bool),
    Key("time_zone", _nonempty),
    Key("disable_server_side_cursors", _bool),
    Key("test", _object),
    Key("options", _object),
    Key("network_timeout", _network_timeout),
)

KEYS: Mapping[str, Key] = {key.name: key for key in _KEYS}
CONNECTION_KEYS = frozenset(key.name for key in _KEYS if key.connection)
OBJECT_KEYS = frozenset({"options", "test"})
DURATION_KEYS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "connect_timeout",
    "network_timeout",
)

# Option names whose values are masked wherever options are shown.
SECRET_OPTION_WORDS = ("password", "passwd", "secret", "token", "passphrase")


def is_secret_option(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_OPTION_WORDS)
