"""PostgreSQL: session settings travel in the startup packet's `options`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from django_dbconfig.backends.base.settings import (
    GALERA_ONLY,
    SERVER_KEYS,
    Backend,
    OptionConflict,
    RenderContext,
    keepalive,
    path_key,
    render_extra,
    resolve_path,
    whole_number,
    whole_seconds,
)
from django_dbconfig.backends.base.statements import (
    Dialect,
    Kind,
    Token,
    is_word,
    reads_write,
    statements,
    strings_in,
)
from django_dbconfig.core.durations import MAX_MS, format_duration
from django_dbconfig.core.keys import LOAD_BALANCE_HOSTS, SSLMODES, TARGET_SESSION_ATTRS

# Session settings sent with `-c name=value` at connection start, in this order.
SESSION_SETTINGS = (
    "search_path",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "read_only",
)


def quote_ident(name: str) -> str:
    """Quote a schema name as PostgreSQL does: wrap in double quotes, double any inside."""
    return '"' + name.replace('"', '""') + '"'


def escape_option(value: str) -> str:
    """Escape for libpq's `options`: a space separates arguments unless backslash-escaped."""
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


# The options network_timeout renders (render_options).
KEEPALIVE_OPTIONS = (
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
# libpq's connection parameters (PostgreSQL 17's list): what OPTIONS may pass to psycopg.
LIBPQ_PARAMETERS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "sslnegotiation",
        "requiressl",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslkeylogfile",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    }
)


def choices_of(key: str) -> tuple[str, ...]:
    """libpq's values for a multi-host key."""
    return TARGET_SESSION_ATTRS if key == "target_session_attrs" else LOAD_BALANCE_HOSTS


def session_settings(values: Mapping[str, Any]) -> dict[str, str]:
    """Every configured session setting as PostgreSQL's parameter name and text value."""
    found: dict[str, str] = {}
    for key in SESSION_SETTINGS:
        if key not in values:
            continue
        value = values[key]
        if key == "search_path":
            found[key] = ",".join(quote_ident(schema) for schema in value)
        elif key == "read_only":
            found["default_transaction_read_only"] = "on" if value else "off"
        else:
            found[key] = f"{value}ms"
    return found


def session_options(values: Mapping[str, Any]) -> str:
    """The `-c` switches for every configured session setting."""
    return " ".join(f"-c {name}={escape_option(text)}" for name, text in session_settings(values).items())


# What a `-c` switch of a hand-written `options` string becomes, for --export.
_SETTING_KEYS = {
    "search_path": "search_path",
    "statement_timeout": "statement_timeout",
    "lock_timeout": "lock_timeout",
    "idle_in_transaction_session_timeout": "idle_in_transaction_session_timeout",
    "default_transaction_read_only": "read_only",
}
# A PostgreSQL time setting: a whole number with an optional unit; no unit is milliseconds.
_GUC_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|min|h)?\s*$")
_GUC_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}
_GUC_BOOLEANS = {
    "on": True,
    "true": True,
    "yes": True,
    "1": True,
    "off": False,
    "false": False,
    "no": False,
    "0": False,
}


# ------------------------------------------------------------------ lifting read-only

SQL = Dialect(dollar_quotes=True, nested_comments=True)
READ_ONLY_SETTINGS = ("default_transaction_read_only", "transaction_read_only")
# What PostgreSQL reads as true: on, 1, and true or yes or a unique prefix of them.
_GUC_TRUE = frozenset({"on", "1", "t", "tr", "tru", "true", "y", "ye", "yes"})


def _true_value(tokens: list[Token]) -> bool:
    """Whether a SET's value is one literal that PostgreSQL reads as true."""
    return (
        len(tokens) == 1
        and tokens[0].kind in (Kind.WORD, Kind.STRING)
        and tokens[0].text.strip().lower() in _GUC_TRUE
    )


def read_only_lift(statement: list[Token], params: Any, *, session_pooler: bool) -> str | None:
    """The form of one statement that would lift read-only mode, or None."""
    head = statement[0].text if statement[0].kind is Kind.WORD else ""
    second = statement[1] if len(statement) > 1 else None
    if head in ("begin", "start") and reads_write(statement):
        return "BEGIN ... READ WRITE" if head == "begin" else "START TRANSACTION ... READ WRITE"
    if head == "set":
        rest = statement[2:] if is_word(second, "session", "local") else statement[1:]
        first = rest[0] if rest else None
        if is_word(first, "characteristics", "transaction"):
            if not reads_write(rest):
                return None
            if is_word(first, "characteristics"):
                return "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"
            return "SET TRANSACTION READ WRITE"
        if first is not None and first.kind in (Kind.WORD, Kind.IDENT) and first.text in READ_ONLY_SETTINGS:
            # `SET name TO DEFAULT` and any value but a literal true lift it (or may).
            if len(rest) > 1 and (is_word(rest[1], "to") or rest[1].text == "=") and _true_value(rest[2:]):
                return None
            return f"SET {first.text} to anything but on"
        return None
    if head == "reset" and second is not None and second.text in READ_ONLY_SETTINGS:
        return f"RESET {second.text}"
    # Without a pooler, a reset goes back to the settings of the startup packet, and
    # under `pooler: transaction` to the role's defaults: both keep read-only mode.
    # Under `pooler: session` they were SET after the connection opened, and go.
    if session_pooler and head in ("reset", "discard") and is_word(second, "all"):
        return f"{head.upper()} ALL, under pooler: session"
    for at, token in enumerate(statement):
        if not (is_word(token, "set_config") and at + 2 < len(statement) and statement[at + 1].text == "("):
            continue
        name = statement[at + 2]
        if name.kind is Kind.STRING:
            if name.text.strip().lower() not in READ_ONLY_SETTINGS:
                continue
            value = (
                statement[at + 4 : at + 5] if statement[at + 3 : at + 4] == [Token(Kind.PUNCT, ",")] else []
            )
            if _true_value(value):
                continue
            return f"set_config('{name.text.strip().lower()}', ...) to anything but on"
        # A name from a parameter or an expression: refused if any read-only setting is named.
        texts = [t.text.lower() for t in statement if t.kind is Kind.STRING] + [
            text.lower() for text in strings_in(params)
        ]
        if any("transaction_read_only" in text for text in texts):
            return "set_config() of a read-only setting"
    return None


def split_options(text: str) -> list[str]:
    """Split libpq's `options` as the server does: on spaces, a backslash escaping the next character."""
    words: list[str] = []
    word: list[str] | None = None
    escaped = False
    for char in text:
        if escaped:
            word = [*(word or []), char]
            escaped = False
        elif char == "\\":
            escaped = True
            word = word or []
        elif char.isspace():
            if word is not None:
                words.append("".join(word))
            word = None
        else:
            word = [*(word or []), char]
    if word is not None:
        words.append("".join(word))
    return words


def parse_switches(text: str) -> list[tuple[str, str]] | None:
    """The `(name, value)` of each `-c name=value` (or `--name=value`), or None for anything else."""
    words = split_options(text)
    switches = []
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-c" and index + 1 < len(words):
            setting, index = words[index + 1], index + 2
        elif (word.startswith("-c") and len(word) > 2) or (word.startswith("--") and "=" in word):
            setting, index = word[2:], index + 1
        else:
            return None
        name, equals, value = setting.partition("=")
        if not equals or not name:
            return None
        switches.append((name.lower().replace("-", "_"), value))
    return switches


def parse_search_path(text: str) -> tuple[str, ...] | None:
    """A search_path value as PostgreSQL reads it (unquoted names fold to lower case), or None."""
    names: list[str] = []
    rest = text.strip()
    while rest:
        if rest.startswith('"'):
            match = re.match(r'"((?:[^"]|"")*)"', rest)
            if match is None:
                return None
            names.append(match[1].replace('""', '"'))
            rest = rest[match.end() :].lstrip()
        else:
            name, _, _ = rest.partition(",")
            name = name.strip()
            if not name or '"' in name or " " in name:
                return None
            names.append(name.lower())
            rest = rest[len(rest.partition(",")[0]) :].lstrip()
        if rest.startswith(","):
            rest = rest[1:].lstrip()
            if not rest:
                return None
        elif rest:
            return None
    return tuple(names) or None


def setting_value(key: str, text: str) -> Any:
    """The typed value of a session setting's text (as alias keys hold them), or None."""
    if key == "search_path":
        return parse_search_path(text)
    if key == "read_only":
        return _GUC_BOOLEANS.get(text.strip().lower())
    match = _GUC_DURATION.match(text)
    if match is None:
        return None
    ms = int(match[1]) * _GUC_UNITS_MS[match[2] or "ms"]
    return ms if ms <= MAX_MS else None


def parse_startup(text: str) -> dict[str, Any] | None:
    """Every `-c` switch of an `options` string with its typed value, for comparing two strings."""
    switches = parse_switches(text)
    if switches is None or len({name for name, _ in switches}) < len(switches):
        return None
    settings: dict[str, Any] = {}
    for name, value in switches:
        key = _SETTING_KEYS.get(name)
        typed = setting_value(key, value) if key else None
        settings[name] = typed if typed is not None else value
    return settings


def session_keys(settings: list[tuple[str, str]]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Session settings (server name, text) as alias keys, and those that are not keys."""
    keys: dict[str, Any] = {}
    rest = []
    for name, value in settings:
        key = _SETTING_KEYS.get(name)
        typed = setting_value(key, value) if key else None
        if key is None or typed is None:
            rest.append((name, value))
        elif key == "search_path":
            keys[key] = list(typed)
        elif key == "read_only":
            keys[key] = typed
        else:
            keys[key] = format_duration(typed)
    return keys, rest


class PostgreSQL(Backend):
    name = "postgresql"
    display = "PostgreSQL"
    engine = "django_dbconfig.backends.postgresql"
    earlier_engines: ClassVar[tuple[str, ...]] = ("django_dbconfig.engines.postgresql",)
    django_engine = "django.db.backends.postgresql"
    # libpq's connection parameters, and what Django's engine and psycopg read from OPTIONS.
    driver_options = LIBPQ_PARAMETERS | {
        "isolation_level",
        "server_side_binding",
        "assume_role",
        "pool",
        "prepare_threshold",
        "cursor_factory",
        "context",
    }
    generated_by = {
        "options": tuple(SESSION_SETTINGS),
        "sslmode": ("sslmode",),
        "sslrootcert": ("sslrootcert",),
        "sslcert": ("sslcert",),
        "sslkey": ("sslkey",),
        "application_name": ("application_name",),
        "target_session_attrs": ("target_session_attrs",),
        "load_balance_hosts": ("load_balance_hosts",),
        "connect_timeout": ("connect_timeout",),
        **{name: ("network_timeout",) for name in KEEPALIVE_OPTIONS},
    }
    key_instead = {"pool": "pool"}
    reasons = GALERA_ONLY
    keys = SERVER_KEYS | {
        "pool",
        "search_path",
        "idle_in_transaction_session_timeout",
        "application_name",
        "target_session_attrs",
        "load_balance_hosts",
    }
    defaults = {
        "port": 5432,
        "conn_max_age": 60,
        "conn_health_checks": True,
        "connect_timeout": 5000,
        "network_timeout": 30_000,
    }
    driver_modules = ("psycopg", "psycopg2")
    install = 'pip install "django-dbconfig[postgresql]" (psycopg 3)'
    read_only_option = "options"
    read_only_pattern = re.compile(r"default_transaction_read_only=(on|true|1)\b", re.I)

    read_only_error = "InternalError"

    def read_only_lift_words(self, *, session_pooler: bool) -> tuple[str, ...]:
        words = ("transaction_read_only", "read write", "set_config")
        return (*words, "reset", "discard") if session_pooler else words

    def read_only_lift(self, sql: str, params: Any, *, session_pooler: bool) -> str | None:
        for statement in statements(sql, SQL):
            found = read_only_lift(statement, params, session_pooler=session_pooler)
            if found:
                return found
        return None

    def refuses_write(self, error: BaseException | None) -> bool:
        # SQLSTATE 25006 read_only_sql_transaction: default_transaction_read_only, or a hot standby.
        return getattr(error, "sqlstate", None) == "25006"

    def validate(self, values: Mapping[str, Any]) -> tuple[str, str] | None:
        hosts, ports = values.get("host"), values.get("port")
        count = len(hosts) if isinstance(hosts, tuple) else 1
        if isinstance(ports, tuple) and len(ports) != count:
            return "port", (
                f"port lists {len(ports)} ports for {count} host{'s' if count != 1 else ''}. "
                "Give one port for every host, or one port for all of them."
            )
        return None

    def render_options(self, values: Mapping[str, Any], ctx: RenderContext) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for key in ("sslmode", "application_name", "target_session_attrs", "load_balance_hosts"):
            if key in values:
                options[key] = values[key]
        for key in ("sslrootcert", "sslcert", "sslkey"):
            if key in values:
                options[key] = resolve_path(values[key], ctx.base_dir)
        if values.get("connect_timeout") is not None:  # null: the driver's own (no limit)
            # libpq counts whole seconds and treats anything under 2 as 2.
            options["connect_timeout"] = whole_seconds(values["connect_timeout"], minimum=2)
        if values.get("network_timeout"):
            # libpq's own settings, so any psycopg engine (and the pool) honours them.
            # Keepalives find a silent server while waiting on a reply; tcp_user_timeout
            # ends a connection whose sent query is never acknowledged.
            tcp = keepalive(values["network_timeout"])
            options |= {
                "keepalives": 1,
                "keepalives_idle": tcp.idle,
                "keepalives_interval": tcp.interval,
                "keepalives_count": tcp.probes,
                "tcp_user_timeout": tcp.user_timeout_ms,
            }
        # Behind a pooler the settings cannot travel in the startup packet: see poolers.py.
        startup = "" if values.get("pooler") else session_options(values)
        if startup:
            options["options"] = startup
        if values.get("pool"):
            options["pool"] = values["pool"]
        return options

    def keys_from_options(
        self, options: Mapping[str, Any], base_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        keys: dict[str, Any] = {}
        verbatim: dict[str, Any] = {}
        for name, value in options.items():
            seconds = whole_number(value)
            if name == "sslmode" and value in SSLMODES:
                keys["sslmode"] = value
            elif name in ("sslrootcert", "sslcert", "sslkey") and path_key(value, base_dir):
                keys[name] = path_key(value, base_dir)
            elif (name == "application_name" and isinstance(value, str) and value.strip()) or (
                name in ("target_session_attrs", "load_balance_hosts") and value in choices_of(name)
            ):
                keys[name] = value
            elif name == "connect_timeout" and seconds is not None and seconds >= 2:
                keys["connect_timeout"] = f"{seconds}s"
            elif name == "options" and isinstance(value, str):
                mapped, rest = self._session_keys(value)
                keys.update(mapped)
                if rest:
                    verbatim["options"] = rest
            elif name == "pool" and (value is True or isinstance(value, dict)):
                keys["pool"] = value
            else:
                verbatim[name] = value
        # The keepalives that network_timeout renders become that key again.
        ms = verbatim.get("tcp_user_timeout")
        if isinstance(ms, int) and ms >= 1000:
            tcp = keepalive(ms)
            rendered = {
                "keepalives": 1,
                "keepalives_idle": tcp.idle,
                "keepalives_interval": tcp.interval,
                "keepalives_count": tcp.probes,
                "tcp_user_timeout": ms,
            }
            if all(verbatim.get(name) == value for name, value in rendered.items()):
                keys["network_timeout"] = format_duration(ms)
                verbatim = {name: value for name, value in verbatim.items() if name not in rendered}
        return keys, verbatim

    @staticmethod
    def _session_keys(text: str) -> tuple[dict[str, Any], str]:
        """Session settings of an `options` string as keys; the other switches as text."""
        switches = parse_switches(text)
        if switches is None or len({name for name, _ in switches}) < len(switches):
            return {}, text  # not only `-c` switches, or one set twice: kept as written
        keys, rest = session_keys(switches)
        return keys, " ".join(f"-c {escape_option(f'{name}={value}')}" for name, value in rest)

    def keys_from_session(self, session: Mapping[str, str]) -> dict[str, Any]:
        keys, rest = session_keys(list(session.items()))
        return keys if not rest else {}

    def merge_option(self, option: str, generated: Any, given: Any) -> Any:
        """A user's own libpq `options` adds its switches after the session settings' ones.

        libpq applies the last `-c` for a setting: one that sets a setting the keys
        already set would silently win, so it is refused.
        """
        if option != "options" or not isinstance(given, str) or not isinstance(generated, str):
            return super().merge_option(option, generated, given)
        switches = parse_switches(given)
        if switches is None:
            raise OptionConflict(
                option,
                "is not only -c name=value switches, so it cannot be combined with the session "
                "settings the keys send in the same startup option",
            )
        generated_names = {name for name, _ in parse_switches(generated) or []}
        both = sorted({name for name, _ in switches} & generated_names)
        if both:
            raise OptionConflict(option, f"sets {', '.join(both)}, which the keys set too")
        return f"{generated} {given}"

    def render(self, values: Mapping[str, Any], ctx: RenderContext) -> Any:
        settings = super().render(values, ctx)
        if values.get("pool"):
            settings["CONN_MAX_AGE"] = 0
        # Several hosts (and ports) go to libpq as its comma-separated lists.
        if isinstance(values.get("host"), tuple):
            settings["HOST"] = ",".join(values["host"])
        if isinstance(values.get("port"), tuple):
            settings["PORT"] = ",".join(str(port) for port in values["port"])
        extra = render_extra(values, session_settings(values))
        if extra:
            settings["DBCONFIG"] = extra
        if values.get("pooler") == "transaction":
            # Django's documented requirement: a named cursor outlives the transaction
            # the pooler lends the server connection for.
            settings["DISABLE_SERVER_SIDE_CURSORS"] = True
        return settings
