"""PostgreSQL probe: TLS from pg_stat_ssl, schemas from pg_namespace, settings from SHOW."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.db.utils import load_backend

from django_dbconfig.backends.base.probe import (
    DURATION_SETTINGS,
    Expected,
    ProbeSpec,
    SessionHealth,
    check_replication,
    check_tls,
    check_write_access,
    check_writer,
    compare_duration,
    compare_read_only,
    compare_text,
    fetch_one,
    named,
    round_trip_ms,
    scrub,
    secrets_of,
)
from django_dbconfig.backends.postgresql import pooler as poolers
from django_dbconfig.backends.postgresql.settings import quote_ident
from django_dbconfig.core import problems
from django_dbconfig.core.report import AliasReport, SchemaReport, ServerReport, TlsReport, WriteAccess

logger = logging.getLogger(__name__)

# SHOW prints durations in the largest exact unit; a bare number is in the base unit, ms.
_PG_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|min|h|d)?\s*$")
_PG_UNITS_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}

# Whether the server is a standby, and its lag in seconds: none while it has replayed all
# the WAL it received, else the age of the last transaction it replayed (NULL when unknown).
REPLICATION_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()))
       END
"""


def load(spec: ProbeSpec) -> None:
    """Import the backend (and its driver) before the probe threads start."""

    load_backend(spec.settings["ENGINE"])


def expected_from_config(values: Mapping[str, Any], entry: Mapping[str, Any]) -> Expected:
    """What the configuration asks, from its effective values (the intent, before any options)."""
    return Expected(
        sslmode=values.get("sslmode"),
        search_path=values.get("search_path"),
        durations={key: values[key] for key in DURATION_SETTINGS if key in values},
        application_name=values.get("application_name"),
        read_only=values.get("read_only"),
    )


def expected_from_settings(entry: Mapping[str, Any]) -> Expected:
    """What a hand-written DATABASES entry asks: its sslmode and its `-c` startup options."""
    options = entry.get("OPTIONS") or {}
    # Behind a pooler the settings are not in `options` but in the DBCONFIG entry.
    switches = {**poolers.settings_of(entry), **startup_settings(str(options.get("options") or ""))}
    durations = {}
    for key in DURATION_SETTINGS:
        if key in switches:
            ms = pg_duration_ms(switches[key])
            if ms is not None:
                durations[key] = ms
    read_only = switches.get("default_transaction_read_only")
    return Expected(
        sslmode=options.get("sslmode"),
        search_path=tuple(split_identifiers(switches["search_path"])) if "search_path" in switches else None,
        durations=durations,
        application_name=options.get("application_name") or switches.get("application_name"),
        read_only=read_only.lower() in ("on", "true", "1", "yes") if read_only is not None else None,
    )


def startup_settings(options: str) -> dict[str, str]:
    """The `-c name=value` settings of libpq's `options`, the last one winning as on the server."""
    tokens: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        tokens.append("".join(current))
    found: dict[str, str] = {}
    index = 0
    switch = "-c"
    while index < len(tokens):
        token = tokens[index]
        if token == switch and index + 1 < len(tokens):
            index += 1
            token = tokens[index]
        elif token.startswith("-c") or token.startswith("--"):
            token = token[2:]
        else:
            index += 1
            continue
        name, sep, value = token.partition("=")
        if sep:
            found[name.replace("-", "_").lower()] = value
        index += 1
    return found


def split_identifiers(text: str) -> list[str]:
    """A comma-separated identifier list as PostgreSQL reads it (quotes kept, others folded)."""
    names: list[str] = []
    current: list[str] = []
    quoted = False
    in_quotes = False
    index = 0
    while index < len(text):
        char = text[index]
        if in_quotes:
            if char == '"':
                if text[index + 1 : index + 2] == '"':
                    current.append('"')
                    index += 1
                else:
                    in_quotes = False
            else:
                current.append(char)
        elif char == '"':
            in_quotes = quoted = True
        elif char.isspace() and (quoted or not current):
            pass  # space around a name (`"a", "b"` as the server stores role defaults) is not part of it
        elif char == ",":
            names.append(_finish(current, quoted))
            current, quoted = [], False
        else:
            current.append(char)
        index += 1
    if current or quoted:
        names.append(_finish(current, quoted))
    return [name for name in names if name]


def _finish(chars: list[str], quoted: bool) -> str:
    text = "".join(chars)
    return text if quoted else text.strip().lower()


def pg_duration_ms(text: str) -> int | None:
    match = _PG_DURATION.match(text)
    if not match:
        return None
    return int(match.group(1)) * _PG_UNITS_MS[match.group(2) or "ms"]


def probe(spec: ProbeSpec) -> AliasReport:
    """Connect as Django would (own connection, no pool) and read back what is in effect."""
    settings = spec.settings
    settings.setdefault("OPTIONS", {}).pop("pool", None)
    connection = _connect(settings, spec)
    spec.mark_connected()
    report = AliasReport(spec.alias, "postgresql")
    try:
        connection.autocommit = True
        # As the engine does behind a session pooler: the settings are SET, not in the startup.
        poolers.apply_session_settings(connection, settings)
        with connection.cursor() as cursor:
            _inspect(cursor, connection, spec, report)
    except Exception as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", secrets_of(settings))
        report.add(problems.problem(problems.E111, f"A check query failed: {message}", alias=spec.alias))
    finally:
        connection.close()
    return report


def _inspect(cursor: Any, connection: Any, spec: ProbeSpec, report: AliasReport) -> None:
    report.server_version = str(fetch_one(cursor, "SHOW server_version")[0]).split()[0]
    report.latency_ms = round_trip_ms(cursor)

    pooler = poolers.pooler_of(spec.settings)
    if pooler:
        # pg_stat_ssl would describe the pooler's own link to the server: what matters
        # here is this client's link to the pooler, as libpq sees it.
        in_use, version, cipher = client_tls(connection)
    else:
        in_use, version, cipher = fetch_one(
            cursor, "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
    mode, rootcert = client_ssl(connection)
    verified = bool(in_use) and (
        mode in ("verify-ca", "verify-full") or (mode in ("allow", "prefer", "require") and _exists(rootcert))
    )
    report.tls = TlsReport(bool(in_use), version, cipher, verified, mode)
    check_tls(report, spec, effective_mode=mode)

    expected = spec.expected
    for name, ms in expected.durations.items():
        actual = str(fetch_one(cursor, f"SHOW {name}")[0])
        compare_duration(report, name, ms, pg_duration_ms(actual), actual_text=actual)
    if expected.application_name is not None:
        compare_text(
            report,
            "application_name",
            expected.application_name,
            str(fetch_one(cursor, "SHOW application_name")[0]),
        )
    actual_path = split_identifiers(str(fetch_one(cursor, "SHOW search_path")[0]))
    if expected.search_path is not None:
        compare_text(report, "search_path", ", ".join(expected.search_path), ", ".join(actual_path))
    read_only = str(fetch_one(cursor, "SHOW transaction_read_only")[0]) == "on"
    standby, lag_s = replication_status(cursor)
    host, port = reached(connection)
    report.server = ServerReport(host, port, "standby" if standby else "primary")
    # A write alias on a standby or a read-only server: E160 says why, not E110 as well.
    demoted = check_writer(report, spec, standby=standby, read_only=read_only)
    compare_read_only(report, None if demoted else expected.read_only, read_only)
    if pooler:
        _explain_through_pooler(cursor, spec, report, pooler)

    schemas = list(expected.search_path if expected.search_path is not None else actual_path)
    _schemas(cursor, spec, report, [s for s in schemas if s != "$user"])

    check_replication(report, spec, standby=standby, lag_s=lag_s)
    if expected.read_only:
        check_write_access(report, write_access(cursor, standby=standby))


# How the session's role can write in the schemas of its search_path, whatever its
# session's read-only mode: as their owner, the owner of a table, or through a grant to
# itself, to a role it inherits from, or to PUBLIC (`grantee`, quoted for a REVOKE).
WRITE_ACCESS_SQL = """
WITH path AS (
    SELECT n.oid, n.nspname, n.nspowner, n.nspacl FROM pg_namespace n
    WHERE n.nspname = ANY (current_schemas(false))
), tables AS (
    SELECT c.oid, c.relname, c.relowner, c.relacl, p.nspname
    FROM pg_class c JOIN path p ON p.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'f')
), grants AS (
    SELECT 'schema' AS kind, p.nspname, NULL::name AS relname, a.privilege_type, a.grantee
    FROM path p, aclexplode(p.nspacl) a
    WHERE a.privilege_type = 'CREATE' AND NOT pg_has_role(p.nspowner, 'USAGE')
    UNION ALL
    SELECT 'table', t.nspname, t.relname, a.privilege_type, a.grantee
    FROM tables t, aclexplode(t.relacl) a
    WHERE a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
      AND NOT pg_has_role(t.relowner, 'USAGE')
    UNION ALL
    SELECT 'table', t.nspname, t.relname, a.privilege_type, a.grantee
    FROM tables t JOIN pg_attribute c ON c.attrelid = t.oid AND c.attnum > 0 AND NOT c.attisdropped,
         aclexplode(c.attacl) a
    WHERE a.privilege_type IN ('INSERT', 'UPDATE') AND NOT pg_has_role(t.relowner, 'USAGE')
)
SELECT 'owns schema', p.nspname, NULL, NULL, NULL FROM path p WHERE pg_has_role(p.nspowner, 'USAGE')
UNION ALL
SELECT 'owns table', t.nspname, t.relname, NULL, NULL FROM tables t WHERE pg_has_role(t.relowner, 'USAGE')
UNION ALL
SELECT DISTINCT g.kind, g.nspname, g.relname, g.privilege_type,
       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END
FROM grants g WHERE g.grantee = 0 OR pg_has_role(g.grantee, 'USAGE')
ORDER BY 1, 2, 3, 4, 5
"""
# The order REVOKE lists them in.
_WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")


def write_access(cursor: Any, *, standby: bool) -> WriteAccess:
    """How the session's role could write were read-only lifted, and the REVOKEs that stop it."""
    role, superuser = fetch_one(
        cursor, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"
    )
    role = str(role)
    if standby:
        return WriteAccess(role, False)  # a standby refuses every write, whoever asks
    if superuser:
        return WriteAccess(role, True, ["superuser"])
    cursor.execute(WRITE_ACCESS_SQL)
    owned_schemas: list[str] = []
    owned_tables: list[str] = []
    creates: dict[str, list[str]] = {}  # schema -> grantees
    grants: dict[tuple[str, str], tuple[set[str], set[str]]] = {}  # (schema, grantee) -> privileges, tables
    for kind, schema, table, privilege, grantee in cursor.fetchall():
        if kind == "owns schema":
            owned_schemas.append(quote_ident(schema))
        elif kind == "owns table":
            owned_tables.append(f"{quote_ident(schema)}.{quote_ident(table)}")
        elif kind == "schema":
            creates.setdefault(schema, []).append(grantee)
        else:
            privileges, tables = grants.setdefault((schema, grantee), (set(), set()))
            privileges.add(privilege)
            tables.add(table)
    via: list[str] = []
    fix: list[str] = []
    if owned_schemas:
        via.append(named(owned_schemas, "owns schema"))
    if owned_tables:
        via.append(named(owned_tables, "owns table"))
    for schema, grantees in creates.items():
        via.append(f"CREATE on schema {quote_ident(schema)} (granted to {', '.join(grantees)})")
        fix.extend(f"REVOKE CREATE ON SCHEMA {quote_ident(schema)} FROM {grantee}" for grantee in grantees)
    for (schema, grantee), (privileges, tables) in grants.items():
        listed = ", ".join(p for p in _WRITE_PRIVILEGES if p in privileges)
        count = f"{len(tables)} table{'s' if len(tables) != 1 else ''}"
        via.append(f"{listed} on {count} of schema {quote_ident(schema)} (granted to {grantee})")
        fix.append(f"REVOKE {listed} ON ALL TABLES IN SCHEMA {quote_ident(schema)} FROM {grantee}")
    return WriteAccess(role, bool(via), via, fix)


def replication_status(cursor: Any) -> tuple[bool, float | None]:
    """(the server is a standby, its replication lag in seconds or None when unknown)."""
    standby, lag = fetch_one(cursor, REPLICATION_SQL)
    return bool(standby), None if lag is None else float(lag)


def reached(connection: Any) -> tuple[str | None, int | None]:
    """The host and port libpq connected to (of several hosts, the one that answered)."""
    info = connection.info
    port = getattr(info, "port", None)
    return getattr(info, "host", None), int(port) if port else None


def client_tls(connection: Any) -> tuple[bool, str | None, str | None]:
    """TLS of this client's own connection (in use, protocol, cipher), as libpq reports it."""
    pgconn = getattr(connection, "pgconn", None)
    if pgconn is not None:  # psycopg 3
        if not pgconn.ssl_in_use:
            return False, None, None
        return (True, *libpq_ssl_attributes(pgconn.pgconn_ptr))
    info = connection.info  # psycopg2
    if not info.ssl_in_use:
        return False, None, None
    return True, info.ssl_attribute("protocol"), info.ssl_attribute("cipher")


def libpq_ssl_attributes(pgconn_ptr: int | None) -> tuple[str | None, str | None]:
    """libpq's `PQsslAttribute` protocol and cipher, which psycopg 3 does not wrap.

    Called in the very libpq psycopg uses (its bundled copy, or the system's), on
    psycopg's own PGconn; (None, None) when that library cannot be found.
    """
    library = _libpq()
    if library is None or not pgconn_ptr:
        return None, None
    values = []
    for name in (b"protocol", b"cipher"):
        raw = library.PQsslAttribute(ctypes.c_void_p(pgconn_ptr), name)
        values.append(raw.decode() if raw else None)
    return values[0], values[1]


@functools.lru_cache(maxsize=1)
def _libpq() -> Any:
    from psycopg import pq  # the driver: imported when a probe runs, not with dbcheck's module

    try:
        if pq.__impl__ == "python":
            from psycopg.pq import _pq_ctypes  # the implementation psycopg loaded

            library = _pq_ctypes.pq  # type: ignore[attr-defined]
        elif pq.__impl__ == "binary":
            import psycopg_binary  # the implementation psycopg loaded

            libs = Path(psycopg_binary.__file__).parent.parent / "psycopg_binary.libs"
            found = sorted(libs.glob("libpq*.so*"))
            if len(found) != 1:
                return None
            library = ctypes.CDLL(str(found[0]))
        else:
            name = ctypes.util.find_library("pq")
            if name is None:
                return None
            library = ctypes.CDLL(name)
        function = library.PQsslAttribute
    except (ImportError, OSError, AttributeError):
        logger.debug("libpq's PQsslAttribute is not reachable", exc_info=True)
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    function.restype = ctypes.c_char_p
    return library


# A setting's name on the server, for each name dbcheck reports it under.
_SERVER_NAMES = {"read_only": poolers.READ_ONLY_SETTING}


def _explain_through_pooler(cursor: Any, spec: ProbeSpec, report: AliasReport, pooler: str) -> None:
    """Say why a setting is not in effect through the pooler, and how to fix it (E115)."""
    wrong = [name for name, check in report.settings.items() if not check.ok]
    if not wrong:
        return
    stored = poolers.read_role_defaults(cursor) if pooler == poolers.TRANSACTION else {}
    wanted = poolers.settings_of(spec.settings)
    for name in wrong:
        check = report.settings[name]
        server_name = _SERVER_NAMES.get(name, name)
        actual, expected = check.actual, check.expected
        if name not in DURATION_SETTINGS and name != "read_only":
            actual, expected = repr(actual), repr(expected)
        where = f"{name} is {actual} through the {pooler} pooler, but {expected} is configured"
        if pooler == poolers.SESSION:
            why = (
                "the SET sent when connecting did not hold: the pooler runs in transaction mode, "
                "or resets or drops session state"
            )
        elif server_name not in stored:
            why = "it is not among the role's defaults in this database"
        elif same_setting(server_name, stored[server_name], wanted.get(server_name)):
            why = (
                "the role's default is right, but this server connection of the pooler was opened "
                "before it was written"
            )
        else:
            why = f"the role's default in this database is {stored[server_name]}"
        report.problems = [
            p for p in report.problems if not (p.id in (problems.E109, problems.E110) and _about(p, name))
        ]
        report.add(problems.problem(problems.E115, f"{where}: {why}.", alias=spec.alias))


def _about(found: Any, name: str) -> bool:
    return found.message.startswith(f"{name} ") or (name == "read_only" and found.id == problems.E110)


def same_setting(name: str, stored: str, wanted: str | None) -> bool:
    if wanted is None:
        return False
    if name == "search_path":
        return split_identifiers(stored) == split_identifiers(wanted)
    stored_ms, wanted_ms = pg_duration_ms(stored), pg_duration_ms(wanted)
    if stored_ms is not None or wanted_ms is not None:
        return stored_ms == wanted_ms
    return stored.strip().lower() == wanted.strip().lower()


def client_ssl(connection: Any) -> tuple[str | None, str | None]:
    """The sslmode libpq actually used and its root certificate, from the connection itself."""
    values: dict[str, str | None] = {}
    pgconn = getattr(connection, "pgconn", None)
    if pgconn is not None:  # psycopg 3
        for option in pgconn.info:
            if option.keyword in (b"sslmode", b"sslrootcert"):
                values[option.keyword.decode()] = option.val.decode() if option.val else None
    else:  # psycopg2
        parameters = connection.info.dsn_parameters
        values = {key: parameters.get(key) for key in ("sslmode", "sslrootcert")}
    return values.get("sslmode"), values.get("sslrootcert")


def _connect(settings: dict[str, Any], spec: ProbeSpec) -> Any:
    """A new driver connection built as the alias's engine builds it, bounded by the probe's timeout."""

    wrapper = load_backend(settings["ENGINE"]).DatabaseWrapper(settings, spec.alias)
    params = wrapper.get_connection_params()
    # libpq counts whole seconds and treats anything under 2 as 2.
    params["connect_timeout"] = max(2, spec.whole_seconds)
    return wrapper.get_new_connection(params)


def _exists(rootcert: str | None) -> bool:
    """Whether libpq had a root certificate: then it verified the chain in every mode."""
    if rootcert == "system":
        return True
    path = Path(rootcert) if rootcert else Path(os.path.expanduser("~/.postgresql/root.crt"))
    return path.is_file()


def _create_schema(cursor: Any, spec: ProbeSpec, name: str) -> None:
    """CREATE SCHEMA on the admin connection (migrate keys, not read-only), else on the probe's."""
    sql = f"CREATE SCHEMA {quote_ident(name)}"
    if spec.admin is None:
        cursor.execute(sql)
        return
    connection = _connect(spec.admin, spec)
    try:
        connection.autocommit = True
        with connection.cursor() as admin_cursor:
            admin_cursor.execute(sql)
    finally:
        connection.close()


def _schemas(cursor: Any, spec: ProbeSpec, report: AliasReport, expected: list[str]) -> None:
    """Check each search_path schema exists and is usable; create missing ones if asked."""

    report.schemas = schemas = SchemaReport(expected=expected)
    if not expected:
        return
    cursor.execute(
        "SELECT nspname, has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = ANY(%s)",
        [expected],
    )
    usable = dict(cursor.fetchall())
    missing = [name for name in expected if name not in usable]
    for name in missing if spec.create_schemas else []:
        try:
            _create_schema(cursor, spec, name)
        except Exception as exc:
            message = scrub(f"{type(exc).__name__}: {exc}", secrets_of(spec.settings))
            report.add(
                problems.problem(
                    problems.E108, f'Could not create schema "{name}": {message}', alias=spec.alias
                )
            )
        else:
            schemas.created.append(name)
            logger.info("dbcheck: created schema %r on %s", name, spec.alias)
    schemas.missing = [name for name in missing if name not in schemas.created]
    for name in schemas.missing:
        report.add(
            problems.problem(
                problems.E106, f'Schema "{name}" of the search_path does not exist.', alias=spec.alias
            )
        )
    for name, allowed in usable.items():
        if not allowed:
            report.add(
                problems.problem(
                    problems.E107,
                    f'The user may not use schema "{name}" (no USAGE privilege).',
                    alias=spec.alias,
                )
            )


def session_health(connection: Any, cursor: Any) -> SessionHealth:
    """Read-only mode, TLS and (on a standby) replica lag of the session, as the server reports them."""
    read_only, in_use, version, cipher, in_recovery = fetch_one(
        cursor,
        "SELECT current_setting('transaction_read_only') = 'on', s.ssl, s.version, s.cipher, "
        "pg_is_in_recovery() FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()",
    )
    return SessionHealth(
        read_only=bool(read_only),
        tls_in_use=bool(in_use),
        tls_version=version,
        tls_cipher=cipher,
        replica_lag_s=replica_lag_seconds(cursor) if in_recovery else None,
        role="standby" if in_recovery else "primary",
    )


def replica_lag_seconds(cursor: Any) -> float | None:
    """How far a standby's replay is behind, in seconds; 0 when it has replayed all it received.

    `now() - pg_last_xact_replay_timestamp()` alone grows on an idle primary, where
    there is nothing to replay; so a standby that has replayed everything it
    received is not lagging. None on a primary.
    """
    return replication_status(cursor)[1]
