"""MySQL and MariaDB: session settings go in `init_command`, TLS in `ssl_mode` and `ssl`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from django_dbconfig.backends.base.settings import (
    SERVER_KEYS,
    Backend,
    OptionConflict,
    RenderContext,
    path_key,
    render_extra,
    resolve_path,
    whole_number,
    whole_seconds,
)
from django_dbconfig.backends.base.statements import Dialect, Kind, Token, is_word, reads_write, statements

# mysqlclient's ssl_mode for each sslmode. Each is at least as strict as asked:
# with MariaDB Connector/C, VERIFY_CA also checks the host name.
SSL_MODES = {
    "disable": "DISABLED",
    "allow": "PREFERRED",
    "prefer": "PREFERRED",
    "require": "REQUIRED",
    "verify-ca": "VERIFY_CA",
    "verify-full": "VERIFY_IDENTITY",
}
# The sslmode each ssl_mode stands for, for URLs and for reading settings back.
# PREFERRED is both allow and prefer; the later, prefer, wins.
SSLMODE_OF = {ssl_mode: sslmode for sslmode, ssl_mode in SSL_MODES.items()}
TLS_MODES = ("require", "verify-ca", "verify-full")
# What sql_mode is set to, failing the connect, when TLS was asked for and the
# session is not encrypted. mysqlclient built on MariaDB Connector/C 3.3
# connects in plain text despite ssl_mode=REQUIRED; this guard runs on the
# server, inside the connect, whatever the driver did.
TLS_GUARD = "DBCONFIG_TLS_REQUIRED_BUT_SESSION_NOT_ENCRYPTED"
# mysqlclient's connect() keywords, and isolation_level, which Django's engine reads.
MYSQLCLIENT_PARAMETERS = frozenset(
    {
        "host",
        "user",
        "password",
        "passwd",
        "database",
        "db",
        "port",
        "unix_socket",
        "conv",
        "connect_timeout",
        "read_timeout",
        "write_timeout",
        "compress",
        "named_pipe",
        "init_command",
        "read_default_file",
        "read_default_group",
        "cursorclass",
        "use_unicode",
        "charset",
        "collation",
        "auth_plugin",
        "sql_mode",
        "client_flag",
        "multi_statements",
        "ssl_mode",
        "ssl",
        "local_infile",
        "autocommit",
        "binary_prefix",
        "server_public_key_path",
        "isolation_level",
    }
)
# The session variables each key sets in init_command, in either server's names.
_VARIABLES_OF = {
    "statement_timeout": ("max_execution_time", "max_statement_time"),
    "lock_timeout": ("innodb_lock_wait_timeout", "lock_wait_timeout"),
    "read_only": ("transaction_read_only", "tx_read_only"),
    "wsrep_sync_wait": ("wsrep_sync_wait",),
}
# Galera's keys, for a MariaDB (or MySQL) node of a Galera cluster.
GALERA_KEYS = frozenset({"wsrep_sync_wait", "galera_cluster_size"})
_NO_SEARCH_PATH = "MySQL and MariaDB have no schema search path: a database is a schema. Set name instead."
_POSTGRES_ONLY = "it is a PostgreSQL setting with no MySQL/MariaDB equivalent."
_ONE_HOST = (
    "several hosts (libpq's failover) exist for PostgreSQL only: give MySQL/MariaDB one host, "
    "and put a proxy or a virtual IP in front of several servers."
)

# ------------------------------------------------------------------ lifting read-only

# `@@session.tx_read_only` is one word; "..." is a string (unless sql_mode has
# ANSI_QUOTES); /*! ... */ is run by the server.
SQL = Dialect(
    word_start="@",
    word_more="$.",
    backslash_escapes=True,
    double_quoted_strings=True,
    backquoted_names=True,
    hash_comments=True,
    dash_comment_needs_space=True,
    executable_comments=True,
)
READ_ONLY_VARIABLES = ("tx_read_only", "transaction_read_only")
# The error of a write refused by the server's read_only (or super_read_only), and the
# words of its message that tell it from other options' refusals.
SERVER_READ_ONLY = 1290
READ_ONLY_OPTION = "read-only"
_SCOPES = ("session.", "local.", "global.")
_TRUE = frozenset({"1", "on", "true"})
_QUOTED_NAMES = (Kind.IDENT, Kind.STRING)


def _variable(statement: list[Token], at: int) -> tuple[str, int] | None:
    """The system variable named at a position (`@@session.tx_read_only`, `tx_read_only`)
    and the position after its name, or None for anything else (`@user_variable`)."""
    token = statement[at]
    # "..." names a variable too when sql_mode has ANSI_QUOTES, which the statement alone does
    # not tell: a string is read as a name (in the other modes the server refuses it there).
    if token.kind in _QUOTED_NAMES:
        return token.text.lower(), at + 1
    if token.kind is not Kind.WORD or (token.text.startswith("@") and not token.text.startswith("@@")):
        return None
    name, after = token.text.removeprefix("@@"), at + 1
    # @@session.`tx_read_only`: the quoted part is the next token.
    if name.endswith(".") and after < len(statement) and statement[after].kind in _QUOTED_NAMES:
        name, after = name + statement[after].text.lower(), after + 1
    for scope in _SCOPES:
        name = name.removeprefix(scope)
    return name, after


def read_only_lift(statement: list[Token]) -> str | None:
    """The form of one statement that would lift read-only mode, or None."""
    head = statement[0].text if statement[0].kind is Kind.WORD else ""
    if head == "start" and reads_write(statement):
        return "START TRANSACTION ... READ WRITE"
    if head != "set":
        return None
    if any(is_word(token, "transaction") for token in statement) and reads_write(statement):
        scope = statement[1].text.upper() if is_word(statement[1], "session", "global", "local") else ""
        return " ".join(filter(None, ("SET", scope, "TRANSACTION READ WRITE")))
    # Every assignment of the statement: SET a=1, SESSION tx_read_only=0, and
    # MariaDB's SET STATEMENT tx_read_only=0 FOR ...
    for at in range(1, len(statement)):
        found = _variable(statement, at)
        if found is None or found[0] not in READ_ONLY_VARIABLES:
            continue
        name, after = found
        if after >= len(statement) or statement[after].text not in ("=", ":="):
            continue
        value = statement[after + 1 : after + 2]
        rest = statement[after + 2 : after + 3]
        simple = not rest or rest[0].text == "," or is_word(rest[0], "for")
        if not (
            simple and value and value[0].kind in (Kind.WORD, Kind.STRING) and value[0].text.lower() in _TRUE
        ):
            return f"SET {name} to anything but 1"
    return None


class MySQL(Backend):
    name = "mysql"
    display = "MySQL"
    engine = "django_dbconfig.backends.mysql"
    earlier_engines: ClassVar[tuple[str, ...]] = ("django_dbconfig.engines.mysql",)
    django_engine = "django.db.backends.mysql"
    driver_options = MYSQLCLIENT_PARAMETERS
    generated_by = {
        "init_command": ("sslmode", "statement_timeout", "lock_timeout", "read_only", "wsrep_sync_wait"),
        "ssl_mode": ("sslmode",),
        "ssl": ("sslrootcert", "sslcert", "sslkey"),
        "connect_timeout": ("connect_timeout",),
    }
    keys = SERVER_KEYS | GALERA_KEYS
    reasons = {
        "search_path": _NO_SEARCH_PATH,
        "pool": "Django's connection pool exists for PostgreSQL only; use conn_max_age.",
        "idle_in_transaction_session_timeout": _POSTGRES_ONLY,
        "application_name": _POSTGRES_ONLY,
        "target_session_attrs": _ONE_HOST[0].upper() + _ONE_HOST[1:],
        "load_balance_hosts": _ONE_HOST[0].upper() + _ONE_HOST[1:],
    }
    defaults = {
        "port": 3306,
        "conn_max_age": 60,
        "conn_health_checks": True,
        "connect_timeout": 5000,
        "network_timeout": 30_000,
    }
    driver_modules = ("MySQLdb",)
    install = 'pip install "django-dbconfig[mysql]" (mysqlclient)'
    read_only_variable = "transaction_read_only"
    read_only_option = "init_command"
    read_only_pattern = re.compile(r"\b(tx|transaction)_read_only\s*=\s*(1|on)\b", re.I)
    # Where the session's status variables can be read in an expression.
    session_status_table = "performance_schema.session_status"

    def statement_timeout(self, ms: int) -> str:
        return f"max_execution_time={ms}"

    def merge_option(self, option: str, generated: Any, given: Any) -> Any:
        """A user's `init_command` runs in the same SET as the generated assignments, after them.

        So the TLS guard runs first, and a user's `sql_mode` (as Django's docs advise) applies
        once it passed. A user assignment to a variable the keys set would silently win: refused.
        """
        if option != "init_command" or not isinstance(given, str) or not isinstance(generated, str):
            return super().merge_option(option, generated, given)
        assignments = set_assignments(given)
        if assignments is None:
            raise OptionConflict(
                option,
                "is not one SET statement of name = value assignments, so it cannot run in the same "
                "statement as the session settings the keys generate",
            )
        ours = {name for names in _VARIABLES_OF.values() for name in names}
        both = sorted({variable for variable, _ in assignments} & ours)
        if both:
            raise OptionConflict(option, f"sets {', '.join(both)}, which the keys set too")
        return generated + ", " + ", ".join(text for _, text in assignments)

    read_only_error = "OperationalError"

    def read_only_lift_words(self, *, session_pooler: bool) -> tuple[str, ...]:
        # A pooler (ProxySQL, MaxScale) replays init_command: nothing more to watch.
        return ("tx_read_only", "transaction_read_only", "read write")

    def read_only_lift(self, sql: str, params: Any, *, session_pooler: bool) -> str | None:
        for statement in statements(sql, SQL):
            found = read_only_lift(statement)
            if found:
                return found
        return None

    def refuses_write(self, error: BaseException | None) -> bool:
        # 1792 ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION (MySQL and MariaDB).
        args: tuple[Any, ...] = getattr(error, "args", ())
        return bool(args) and args[0] == 1792

    def server_read_only(self, error: BaseException | None) -> bool:
        """Whether a write was refused by the server's read_only (or MySQL's super_read_only),
        not the session's: 1290 ER_OPTION_PREVENTS_STATEMENT naming --read-only (1290 also
        names other options, such as --secure-file-priv)."""
        args: tuple[Any, ...] = getattr(error, "args", ())
        return bool(args) and args[0] == SERVER_READ_ONLY and READ_ONLY_OPTION in str(args[-1])

    def validate(self, values: Mapping[str, Any]) -> tuple[str, str] | None:
        for key in ("host", "port"):
            if isinstance(values.get(key), tuple):
                return key, f"{key} lists several {key}s, but {_ONE_HOST}"
        return None

    def tls_guard(self) -> str:
        """An assignment that fails unless this session is on TLS (and if its status is unreadable)."""
        cipher = (
            f"(SELECT VARIABLE_VALUE FROM {self.session_status_table} WHERE VARIABLE_NAME = 'Ssl_cipher')"
        )
        return f"sql_mode = IF(COALESCE({cipher}, '') = '', '{TLS_GUARD}', @@SESSION.sql_mode)"

    def session_assignments(self, values: Mapping[str, Any]) -> list[str]:
        assignments = []
        if values.get("sslmode") in TLS_MODES:
            assignments.append(self.tls_guard())
        if "statement_timeout" in values:
            assignments.append(self.statement_timeout(values["statement_timeout"]))
        if "lock_timeout" in values:
            seconds = whole_seconds(values["lock_timeout"])
            assignments.append(f"innodb_lock_wait_timeout={seconds}")
            assignments.append(f"lock_wait_timeout={seconds}")
        if values.get("read_only"):
            assignments.append(f"{self.read_only_variable}=1")
        if "wsrep_sync_wait" in values:
            assignments.append(f"wsrep_sync_wait={values['wsrep_sync_wait']}")
        return assignments

    def render_options(self, values: Mapping[str, Any], ctx: RenderContext) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if values.get("connect_timeout") is not None:  # null: the driver's own (no limit)
            options["connect_timeout"] = whole_seconds(values["connect_timeout"])
        if "sslmode" in values:
            options["ssl_mode"] = SSL_MODES[values["sslmode"]]
        ssl = {
            part: resolve_path(values[key], ctx.base_dir)
            for key, part in (("sslrootcert", "ca"), ("sslcert", "cert"), ("sslkey", "key"))
            if key in values
        }
        if ssl:
            options["ssl"] = ssl
        assignments = self.session_assignments(values)
        if assignments:
            options["init_command"] = "SET SESSION " + ", ".join(assignments)
        return options

    def keys_from_options(
        self, options: Mapping[str, Any], base_dir: Path
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        keys: dict[str, Any] = {}
        verbatim: dict[str, Any] = {}
        for name, value in options.items():
            seconds = whole_number(value)
            ssl = value if isinstance(value, Mapping) else {}
            if name == "connect_timeout" and seconds is not None and seconds >= 1:
                keys["connect_timeout"] = f"{seconds}s"
            elif name == "ssl_mode" and value in ("DISABLED", "PREFERRED"):
                # Stronger modes stay verbatim: as keys they would add the TLS guard to
                # init_command, which the hand-written settings did not have.
                keys["sslmode"] = SSLMODE_OF[value]
            elif (
                name == "ssl"
                and ssl
                and all(
                    part in ("ca", "cert", "key") and path_key(path, base_dir) for part, path in ssl.items()
                )
            ):
                for key, part in (("sslrootcert", "ca"), ("sslcert", "cert"), ("sslkey", "key")):
                    if part in ssl:
                        keys[key] = path_key(ssl[part], base_dir)
            else:
                verbatim[name] = value
        return keys, verbatim

    def render(self, values: Mapping[str, Any], ctx: RenderContext) -> Any:
        settings = super().render(values, ctx)
        # Behind a pooler (ProxySQL, RDS Proxy, MaxScale) nothing changes: init_command is
        # already a query the driver sends once per new client connection, never a
        # startup parameter, and these proxies keep (or replay) a client's session
        # variables on whichever server connection serves it. MySQL has no per-role
        # session defaults, so `transaction` has nothing to write on the server.
        extra = render_extra(values, {})
        if values.get("network_timeout") and self.serves(settings["ENGINE"]):
            # mysqlclient has no keepalive settings: the project's engine sets the TCP
            # options on the connection's socket. Not in OPTIONS, which go to
            # MySQLdb.connect(). Another engine would ignore this entry: check W012 says so.
            extra["network_timeout"] = values["network_timeout"] / 1000
        if extra:
            settings["DBCONFIG"] = extra
        return settings


class MariaDB(MySQL):
    name = "mariadb"
    display = "MariaDB"
    read_only_variable = "tx_read_only"
    session_status_table = "information_schema.SESSION_STATUS"

    def statement_timeout(self, ms: int) -> str:
        # MariaDB counts seconds, with fractions.
        return f"max_statement_time={ms / 1000:g}"


# MySQL and MariaDB name three things of the session differently. People write mysql://
# for MariaDB (and the reverse), so the engine rewrites a refused init_command for the
# other server; dbcheck says which backend to set.
UNKNOWN_SYSTEM_VARIABLE = 1193
_MARIADB_MARKS = (f"{MariaDB.read_only_variable}=", "max_statement_time=", MariaDB.session_status_table)


def is_mariadb_flavoured(init_command: str) -> bool:
    """Whether an init_command names something only MariaDB knows."""
    return any(mark in init_command for mark in _MARIADB_MARKS)


def for_other_server(init_command: str) -> str:
    """The same session settings in the other server's names (MariaDB <-> MySQL)."""
    source: MySQL
    target: MySQL
    if is_mariadb_flavoured(init_command):
        source, target = MariaDB(), MySQL()
        command = re.sub(
            r"max_statement_time=([0-9.]+)",
            lambda m: target.statement_timeout(round(float(m.group(1)) * 1000)),
            init_command,
        )
    else:
        source, target = MySQL(), MariaDB()
        command = re.sub(
            r"max_execution_time=([0-9]+)",
            lambda m: target.statement_timeout(int(m.group(1))),
            init_command,
        )
    command = re.sub(rf"\b{source.read_only_variable}=", f"{target.read_only_variable}=", command)
    return command.replace(source.session_status_table, target.session_status_table)


def set_assignments(statement: str) -> list[tuple[str, str]] | None:
    """The assignments of one `SET ...` statement as (variable name, assignment text), or None.

    None for anything else (another statement, several statements, `SET NAMES`). The
    name is lower case without its scope (`@@session.`, `SESSION `); the text keeps the
    scope, so `GLOBAL x = 1` stays global when it joins the generated SET SESSION.
    """
    text = statement.strip().rstrip(";").strip()
    if not re.match(r"(?i)set\s", text):
        return None
    parts = _split_top_level(text[3:])
    if parts is None:
        return None
    assignments = []
    for part in parts:
        match = re.match(
            r"(?i)^\s*(?:(session|local|global|persist|persist_only)\s+)?"
            r"(@@(?:(session|local|global|persist|persist_only)\.)?)?([a-z_][a-z0-9_]*)\s*:?=\s*\S",
            part,
        )
        if match is None:
            return None
        scope = (match.group(1) or match.group(3) or "").lower()
        text_part = part.strip()
        if not scope or scope in ("session", "local"):
            # Without a scope word, the generated SET SESSION's scope applies: the same.
            text_part = re.sub(r"(?i)^(session|local)\s+|^@@(session\.|local\.)?", "", text_part)
        assignments.append((match.group(4).lower(), text_part))
    return assignments


def _split_top_level(text: str) -> list[str] | None:
    """Split on commas outside quotes and parentheses; None when a quote or parenthesis is left open."""
    parts, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif char == "(":
            depth += 1
            current.append(char)
        elif char == ")":
            depth -= 1
            current.append(char)
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        elif char == ";":
            return None  # a second statement
        else:
            current.append(char)
    if quote or depth:
        return None
    parts.append("".join(current))
    return [part for part in parts if part.strip()] or None
