"""MySQL and MariaDB probe: TLS from the session's Ssl_* status, settings from @@session."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.db.utils import load_backend

from django_dbconfig.backends.base.probe import (
    Expected,
    ProbeSpec,
    SessionHealth,
    check_replication,
    check_tls,
    check_write_access,
    compare_duration,
    compare_read_only,
    compare_text,
    fetch_one,
    round_trip_ms,
    scrub,
    secrets_of,
)
from django_dbconfig.backends.base.settings import whole_seconds
from django_dbconfig.backends.mysql.settings import SSLMODE_OF, MariaDB, MySQL
from django_dbconfig.core import problems
from django_dbconfig.core.report import AliasReport, ClusterReport, ServerReport, TlsReport, WriteAccess

_ASSIGNMENT = re.compile(r"^\s*(?:@@)?(?:session\.)?([a-z_]+)\s*=\s*'?([^']*?)'?\s*$", re.IGNORECASE)


def load(spec: ProbeSpec) -> None:
    """Import the backend (and mysqlclient) before the probe threads start."""

    load_backend(spec.settings["ENGINE"])


def expected_from_config(values: Mapping[str, Any], entry: Mapping[str, Any]) -> Expected:
    """What the configuration asks; lock timeouts in the whole seconds the server counts."""
    durations = {}
    if "statement_timeout" in values:
        durations["statement_timeout"] = values["statement_timeout"]
    if "lock_timeout" in values:
        durations["lock_timeout"] = whole_seconds(values["lock_timeout"]) * 1000
    return Expected(
        sslmode=values.get("sslmode"),
        durations=durations,
        read_only=values.get("read_only"),
        sync_wait=values.get("wsrep_sync_wait"),
        cluster_size=values.get("galera_cluster_size"),
    )


def expected_from_settings(entry: Mapping[str, Any]) -> Expected:
    """What a hand-written entry asks: its ssl_mode and the SET SESSION of its init_command."""
    options = entry.get("OPTIONS") or {}
    assignments = session_assignments(str(options.get("init_command") or ""))
    durations: dict[str, int] = {}
    try:
        if "max_statement_time" in assignments:
            durations["statement_timeout"] = round(float(assignments["max_statement_time"]) * 1000)
        elif "max_execution_time" in assignments:
            durations["statement_timeout"] = int(assignments["max_execution_time"])
        if "innodb_lock_wait_timeout" in assignments:
            durations["lock_timeout"] = int(assignments["innodb_lock_wait_timeout"]) * 1000
    except ValueError:
        pass  # not a number we can compare: the server would refuse it anyway
    read_only = assignments.get(MariaDB.read_only_variable, assignments.get(MySQL.read_only_variable))
    sync_wait = assignments.get("wsrep_sync_wait", "")
    return Expected(
        sync_wait=int(sync_wait) if sync_wait.isdigit() else None,
        sslmode=SSLMODE_OF.get(str(options.get("ssl_mode", "")).upper()),
        durations=durations,
        read_only=read_only.lower() in ("1", "on", "true") if read_only is not None else None,
    )


def session_assignments(init_command: str) -> dict[str, str]:
    """name -> value of a `SET [SESSION] a=b, c=d` init_command (the last one winning)."""
    text = init_command.strip().rstrip(";")
    match = re.match(r"(?is)^set\s+(?:session\s+)?(.*)$", text)
    if not match:
        return {}
    found = {}
    for part in match.group(1).split(","):
        assignment = _ASSIGNMENT.match(part)
        if assignment:
            found[assignment.group(1).lower()] = assignment.group(2)
    return found


def probe(spec: ProbeSpec) -> AliasReport:
    """Connect as Django would (own connection) and read back what is in effect."""

    wrapper = load_backend(spec.settings["ENGINE"]).DatabaseWrapper(spec.settings, spec.alias)
    params = wrapper.get_connection_params()
    seconds = spec.whole_seconds
    # read_timeout bounds the handshake and every query after it, not only the TCP connect.
    params.update(connect_timeout=seconds, read_timeout=seconds, write_timeout=seconds)
    connection = wrapper.get_new_connection(params)
    spec.mark_connected()
    report = AliasReport(spec.alias, "mysql")
    try:
        cursor = connection.cursor()
        try:
            _inspect(cursor, spec, report, params)
        finally:
            cursor.close()
    except Exception as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", secrets_of(spec.settings))
        report.add(problems.problem(problems.E111, f"A check query failed: {message}", alias=spec.alias))
    finally:
        connection.close()
    return report


def _inspect(cursor: Any, spec: ProbeSpec, report: AliasReport, params: Mapping[str, Any]) -> None:
    # SHOW first: a Galera node cut off from its cluster answers SHOW and refuses (or, with
    # wsrep_sync_wait, holds until a timeout) every SELECT.
    version = show_variable(cursor, "GLOBAL", "version") or ""
    mariadb = "mariadb" in version.lower()
    report.vendor = "mariadb" if mariadb else "mysql"
    # "10.11.6-MariaDB-0+deb12u1" -> "10.11.6-MariaDB": the distribution's suffix says nothing.
    report.server_version = version.split("-", maxsplit=1)[0] + ("-MariaDB" if mariadb else "")
    if not check_galera(report, spec, cursor):
        return  # the node refuses queries: nothing more can be read
    report.latency_ms = round_trip_ms(cursor)
    if spec.backend in ("mysql", "mariadb") and spec.backend != report.vendor:
        server = "MariaDB" if mariadb else "MySQL"
        report.add(
            problems.problem(
                problems.W103,
                f'The server is {server} {report.server_version}, but the backend is "{spec.backend}": '
                f"the session settings were rewritten in {server}'s names at connect.",
                alias=spec.alias,
                backend=report.vendor,
            )
        )

    cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_%'")
    status = {str(name): str(value) for name, value in cursor.fetchall()}
    cipher = status.get("Ssl_cipher") or None
    mode = SSLMODE_OF.get(str(params.get("ssl_mode", "")).upper())
    # The server cannot know what the client checked: only VERIFY_CA and VERIFY_IDENTITY
    # make every driver check the certificate (and the session must be on TLS).
    verified = cipher is not None and mode in ("verify-ca", "verify-full")
    report.tls = TlsReport(
        cipher is not None,
        status.get("Ssl_version") or None,
        cipher,
        verified,
        str(params["ssl_mode"]) if params.get("ssl_mode") else None,
    )
    check_tls(report, spec, effective_mode=mode)

    expected = spec.expected
    if "statement_timeout" in expected.durations:
        if mariadb:
            seconds = fetch_one(cursor, "SELECT @@session.max_statement_time")[0]
            actual = round(float(seconds) * 1000)
        else:
            actual = int(fetch_one(cursor, "SELECT @@session.max_execution_time")[0])
        compare_duration(report, "statement_timeout", expected.durations["statement_timeout"], actual)
    if "lock_timeout" in expected.durations:
        actual = int(fetch_one(cursor, "SELECT @@session.innodb_lock_wait_timeout")[0]) * 1000
        compare_duration(report, "lock_timeout", expected.durations["lock_timeout"], actual)
    if expected.sync_wait is not None:
        sync_wait = show_variable(cursor, "SESSION", "wsrep_sync_wait")
        compare_text(report, "wsrep_sync_wait", str(expected.sync_wait), sync_wait)
    variable = MariaDB.read_only_variable if mariadb else MySQL.read_only_variable
    read_only = bool(int(fetch_one(cursor, f"SELECT @@session.{variable}")[0]))
    compare_read_only(report, expected.read_only, read_only)

    if expected.replica_of is not None:
        # Only for replicas: reading the replica status needs a privilege a primary's user may lack.
        standby, lag_s = replication_status(cursor)
        report.server = ServerReport(
            str(params.get("host") or "localhost"),
            int(params["port"]) if params.get("port") else None,
            "standby" if standby else "primary",
        )
        check_replication(report, spec, standby=standby, lag_s=lag_s)
    if expected.read_only:
        check_write_access(
            report, write_access(cursor, str(params.get("db") or spec.settings.get("NAME") or ""))
        )


def show_variable(cursor: Any, scope: str, name: str) -> str | None:
    """A system variable by SHOW, which never fails: None where the server has no such variable
    (MySQL without Galera has no wsrep_*)."""
    cursor.execute(f"SHOW {scope} VARIABLES LIKE %s", [name])
    row = cursor.fetchone()
    return str(row[1]) if row else None


# What dbcheck reads of a Galera node's view of its cluster.
GALERA_STATUS = (
    "wsrep_cluster_status",
    "wsrep_local_state_comment",
    "wsrep_ready",
    "wsrep_cluster_size",
)


def check_galera(report: AliasReport, spec: ProbeSpec, cursor: Any) -> bool:
    """Report a Galera node's cluster state: an error for a node that is not a synced member of
    the primary component, a warning for a cluster smaller than galera_cluster_size.

    False when the node refuses queries (not in the primary component, or not ready)."""
    expected = spec.expected
    galera_keys = expected.sync_wait is not None or expected.cluster_size is not None
    if (show_variable(cursor, "GLOBAL", "wsrep_on") or "OFF").upper() != "ON":
        if galera_keys:
            report.add(
                problems.problem(
                    problems.W171,
                    "Galera keys are set (wsrep_sync_wait or galera_cluster_size), but the server is not "
                    "a Galera node (wsrep_on is OFF): reads are not causal and there is no cluster to check.",
                    alias=spec.alias,
                )
            )
        return True
    names = ", ".join(f"'{name}'" for name in GALERA_STATUS)
    cursor.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
    status = {str(name).lower(): str(value) for name, value in cursor.fetchall()}
    size_text = status.get("wsrep_cluster_size", "")
    cluster = ClusterReport(
        status=status.get("wsrep_cluster_status"),
        state=status.get("wsrep_local_state_comment"),
        ready=status.get("wsrep_ready", "").upper() == "ON",
        size=int(size_text) if size_text.isdigit() else None,
        expected_size=expected.cluster_size,
    )
    report.cluster = cluster
    if cluster.status != "Primary":
        report.add(
            problems.problem(
                problems.E170,
                f"The Galera node is cut off from the primary component (wsrep_cluster_status "
                f"{cluster.status}, {cluster.size} node(s) in its view): it refuses queries, and "
                "its data may be stale.",
                alias=spec.alias,
            )
        )
    elif not cluster.ready or cluster.state != "Synced":
        report.add(
            problems.problem(
                problems.E171,
                f"The Galera node is not a synced member of its cluster (wsrep_local_state_comment "
                f"{cluster.state}, wsrep_ready {'ON' if cluster.ready else 'OFF'}): its reads may "
                "lag behind the cluster, or it refuses queries.",
                alias=spec.alias,
            )
        )
    if (
        cluster.status == "Primary"
        and expected.cluster_size is not None
        and (cluster.size or 0) < expected.cluster_size
    ):
        report.add(
            problems.problem(
                problems.W170,
                f"The Galera cluster has {cluster.size} node(s), but galera_cluster_size is "
                f"{expected.cluster_size}: losing more nodes may cost it its quorum.",
                alias=spec.alias,
            )
        )
    return cluster.status == "Primary" and cluster.ready


# One line of SHOW GRANTS that grants privileges on tables: what, on which, to whom.
_QUOTED = r"`(?:[^`]|``)*`"
_GRANT = re.compile(
    rf"^GRANT (?P<privileges>.+?) ON (?P<database>{_QUOTED}|\*)\.(?P<table>{_QUOTED}|\*) "
    rf"TO (?P<grantee>{_QUOTED}(?:@{_QUOTED})?)",
    re.S,
)
# Privileges that change data or tables. A privilege with columns, `INSERT (a)`, counts.
WRITE_PRIVILEGES = frozenset(
    {
        "ALL PRIVILEGES",
        "INSERT",
        "UPDATE",
        "DELETE",
        "DELETE HISTORY",
        "CREATE",
        "DROP",
        "ALTER",
        "INDEX",
        "CREATE VIEW",
        "TRIGGER",
        "CREATE ROUTINE",
        "ALTER ROUTINE",
    }
)
# Privileges that let a session write while the server runs with read_only = ON.
_PAST_READ_ONLY = frozenset({"ALL PRIVILEGES", "SUPER", "READ_ONLY ADMIN", "CONNECTION_ADMIN"})


def _privileges(text: str) -> list[str]:
    """`SELECT, INSERT (`a`, `b`), UPDATE` -> its privileges, columns kept."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def _database_matches(pattern: str, name: str) -> bool:
    """Whether a grant's database (`*`, a name, or a LIKE pattern with \\_ escapes) covers `name`."""
    if pattern == "*":
        return True
    regex, escaped = "", False
    for char in _unquote(pattern):
        if escaped:
            regex, escaped = regex + re.escape(char), False
        elif char == "\\":
            escaped = True
        else:
            regex += {"%": ".*", "_": "."}.get(char) or re.escape(char)
    return re.fullmatch(regex, name) is not None


def write_access(cursor: Any, database: str) -> WriteAccess:
    """How the session's user (and its active role) could write in `database` were read-only
    lifted, from SHOW GRANTS, and the REVOKEs that stop it."""
    user = str(fetch_one(cursor, "SELECT CURRENT_USER()")[0])
    server_read_only = bool(int(fetch_one(cursor, "SELECT @@global.read_only")[0]))
    cursor.execute("SHOW GRANTS")
    via: list[str] = []
    fix: list[str] = []
    past_read_only = False
    for (line,) in cursor.fetchall():
        grant = _GRANT.match(str(line))
        if grant is None or not _database_matches(grant["database"], database):
            continue
        privileges = _privileges(grant["privileges"])
        names = {privilege.split("(")[0].strip().upper() for privilege in privileges}
        if grant["database"] == "*" and names & _PAST_READ_ONLY:
            past_read_only = True
        writes = [p for p in privileges if p.split("(")[0].strip().upper() in WRITE_PRIVILEGES]
        if not writes:
            continue
        target, grantee = f"{grant['database']}.{grant['table']}", grant["grantee"]
        via.append(f"{', '.join(writes)} on {target} (granted to {grantee})")
        if "ALL PRIVILEGES" in names:
            fix += [
                f"REVOKE ALL PRIVILEGES ON {target} FROM {grantee}",
                f"GRANT SELECT ON {target} TO {grantee}",
            ]
        else:
            fix.append(f"REVOKE {', '.join(writes)} ON {target} FROM {grantee}")
    if server_read_only and not past_read_only:
        # The server refuses every write of a user without a privilege past read_only.
        return WriteAccess(user, False)
    return WriteAccess(user, bool(via), via, fix)


def replication_status(cursor: Any) -> tuple[bool, float | None]:
    """(the server is a replica, its lag in seconds or None when unknown).

    A server with a replica status is a standby; its lag is Seconds_Behind_Master
    (MariaDB) or Seconds_Behind_Source (MySQL), NULL while replication is stopped.
    Without one, or without the privilege to read it, a server running read_only
    counts as a standby whose lag is unknown.
    """
    rows: list[dict[str, Any]] = []
    try:
        cursor.execute("SHOW REPLICA STATUS")
        names = [column[0] for column in cursor.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except Exception:  # no privilege, or a server too old for the statement
        rows = []
    if rows:
        lags = [row.get("Seconds_Behind_Master", row.get("Seconds_Behind_Source")) for row in rows]
        known = [float(lag) for lag in lags if lag is not None]
        return True, max(known) if len(known) == len(lags) else None
    return bool(int(fetch_one(cursor, "SELECT @@global.read_only")[0])), None


def session_health(connection: Any, cursor: Any) -> SessionHealth:
    """Read-only mode, TLS and (on a replica) replication lag of the session, as the server reports them."""
    variable = (MariaDB if connection.mysql_is_mariadb else MySQL).read_only_variable
    (read_only,) = fetch_one(cursor, f"SELECT @@session.{variable}")
    cursor.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')")
    status = {str(name).lower(): str(value or "") for name, value in cursor.fetchall()}
    cipher = status.get("ssl_cipher") or None
    standby, lag = replication_status(cursor)
    return SessionHealth(
        read_only=bool(int(read_only)),
        tls_in_use=cipher is not None,
        tls_version=(status.get("ssl_version") or None) if cipher else None,
        tls_cipher=cipher,
        replica_lag_s=lag if standby else None,
    )
