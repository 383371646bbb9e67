"""What `dbcheck` found: per-alias results, rendered as JSON (the design's shape) or text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding: its level, check id, message and an instruction to fix it."""

    level: Level
    id: str
    message: str
    hint: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"level": self.level, "id": self.id, "message": self.message, "hint": self.hint}


@dataclass
class TlsReport:
    """TLS as the server sees the session; `verified` is what the client checked."""

    in_use: bool
    version: str | None = None
    cipher: str | None = None
    verified: bool = False
    # The driver's effective mode (libpq sslmode, mysqlclient ssl_mode), for the text output.
    mode: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "in_use": self.in_use,
            "version": self.version,
            "cipher": self.cipher,
            "verified": self.verified,
        }


@dataclass
class SchemaReport:
    expected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"expected": list(self.expected), "missing": list(self.missing), "created": list(self.created)}


@dataclass(frozen=True)
class SettingCheck:
    """A configured session setting and what the server reports for it."""

    expected: str | bool | None
    actual: str | bool | None
    ok: bool

    def as_json(self) -> dict[str, Any]:
        return {"expected": self.expected, "actual": self.actual, "ok": self.ok}


@dataclass
class ServerReport:
    """The server the session reached (one of several hosts, maybe) and its role."""

    host: str | None
    port: int | None
    role: str | None  # "primary" or "standby"; None when the backend has no such notion

    def as_json(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "role": self.role}


@dataclass
class ReplicationReport:
    """For a replica: whether its server is a standby and how far it lags (seconds)."""

    primary: str
    standby: bool
    lag_s: float | None
    max_lag_s: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "primary": self.primary,
            "standby": self.standby,
            "lag_s": self.lag_s,
            "max_lag_s": self.max_lag_s,
        }


@dataclass
class ClusterReport:
    """For a Galera node: its view of the cluster, as its wsrep status variables say."""

    status: str | None  # wsrep_cluster_status: "Primary", "non-Primary", "Disconnected"
    state: str | None  # wsrep_local_state_comment: "Synced", "Donor/Desynced", "Joining"...
    ready: bool  # wsrep_ready: the node accepts queries
    size: int | None  # wsrep_cluster_size: nodes in this node's component
    expected_size: int | None = None  # galera_cluster_size, when configured

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": "galera",
            "status": self.status,
            "state": self.state,
            "ready": self.ready,
            "size": self.size,
            "expected_size": self.expected_size,
        }


@dataclass
class WriteAccess:
    """Whether the alias's role could write were its session's read-only mode lifted.

    Checked for read-only aliases and replicas: `via` says how the role can write
    (superuser, owner, a grant), `fix` the statements that take those rights away.
    """

    role: str
    can_write: bool
    via: list[str] = field(default_factory=list)
    fix: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"role": self.role, "can_write": self.can_write, "via": list(self.via), "fix": list(self.fix)}


@dataclass
class AliasReport:
    """Everything dbcheck learned about one alias."""

    alias: str
    vendor: str
    server_version: str | None = None
    latency_ms: float | None = None
    tls: TlsReport | None = None
    schemas: SchemaReport = field(default_factory=SchemaReport)
    settings: dict[str, SettingCheck] = field(default_factory=dict)
    server: ServerReport | None = None
    replication: ReplicationReport | None = None
    cluster: ClusterReport | None = None
    write_access: WriteAccess | None = None
    problems: list[Problem] = field(default_factory=list)
    # Why the alias could not be checked at all (unreachable, timed out); never a secret.
    error: str | None = None
    elapsed_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not any(p.level == "error" for p in self.problems)

    @property
    def reachable(self) -> bool:
        return self.server_version is not None

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def as_json(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "ok": self.ok,
            "vendor": self.vendor,
            "server_version": self.server_version,
            "latency_ms": self.latency_ms,
            "tls": self.tls.as_json() if self.tls is not None else None,
            "schemas": self.schemas.as_json(),
            "settings": {name: check.as_json() for name, check in self.settings.items()},
            "server": self.server.as_json() if self.server is not None else None,
            "replication": self.replication.as_json() if self.replication is not None else None,
            "cluster": self.cluster.as_json() if self.cluster is not None else None,
            "write_access": self.write_access.as_json() if self.write_access is not None else None,
            "problems": [p.as_json() for p in self.problems],
            "error": self.error,
        }


@dataclass
class Report:
    """The whole run: one report per alias, plus problems that belong to no single alias."""

    databases: list[AliasReport]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.databases) and not any(p.level == "error" for p in self.problems)

    @property
    def failed(self) -> list[str]:
        return [d.alias for d in self.databases if not d.ok]

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "databases": [d.as_json() for d in self.databases],
            "problems": [p.as_json() for p in self.problems],
        }


def render_text(report: Report, style: Any) -> list[str]:
    """The report as lines of a readable table, styled with Django's `style`."""
    lines: list[str] = []
    width = max([len(d.alias) for d in report.databases] + [5])
    for db in report.databases:
        status = style.SUCCESS("OK") if db.ok else style.ERROR("FAIL")
        version = db.server_version or "-"
        latency = f"{db.latency_ms:.2f} ms" if db.latency_ms is not None else "-"
        heading = style.MIGRATE_HEADING(f"{db.alias:<{width}}")
        lines.append(f"{heading}  {db.vendor} {version}  {latency}  {status}")
        pad = " " * (width + 2)
        if db.error is not None:
            lines.append(f"{pad}{style.ERROR('unreachable')}: {db.error}")
        else:
            lines.append(f"{pad}tls       {_tls_text(db.tls, style)}")
            if db.schemas.expected:
                lines.append(f"{pad}schemas   {_schemas_text(db.schemas, style)}")
            for name, check in db.settings.items():
                mark = style.SUCCESS("ok") if check.ok else style.ERROR("MISMATCH")
                lines.append(
                    f"{pad}setting   {name}: expected {_show(check.expected)}, "
                    f"actual {_show(check.actual)}  {mark}"
                )
            if db.server is not None and db.server.role is not None:
                lines.append(f"{pad}server    {db.server.host}:{db.server.port} ({db.server.role})")
            if db.replication is not None:
                lines.append(
                    f"{pad}replica   of {db.replication.primary}: {_replication_text(db.replication, style)}"
                )
            if db.cluster is not None:
                lines.append(f"{pad}cluster   {_cluster_text(db.cluster, style)}")
            if db.write_access is not None:
                lines.append(f"{pad}writes    {_write_access_text(db.write_access, style)}")
        for problem in db.problems:
            lines.extend(_problem_lines(problem, style, pad))
    if report.problems:
        lines.append(style.MIGRATE_HEADING("routing and configuration"))
        for problem in report.problems:
            lines.extend(_problem_lines(problem, style, "  "))
    failed = len(report.failed) + (1 if any(p.level == "error" for p in report.problems) else 0)
    total = len(report.databases)
    if report.ok:
        lines.append(style.SUCCESS(f"All {total} database{'s' if total != 1 else ''} passed."))
    else:
        lines.append(
            style.ERROR(
                f"{len(report.failed)} of {total} database{'s' if total != 1 else ''} failed"
                + (", and routing has errors." if failed > len(report.failed) else ".")
            )
        )
    return lines


def _replication_text(replication: ReplicationReport, style: Any) -> str:
    if not replication.standby:
        return str(style.ERROR("the server is not a standby"))
    lag = "unknown" if replication.lag_s is None else f"{replication.lag_s:g} s"
    limit = "" if replication.max_lag_s is None else f" (max {replication.max_lag_s:g} s)"
    return f"standby, lag {lag}{limit}"


def _cluster_text(cluster: ClusterReport, style: Any) -> str:
    size = f"{cluster.size} node{'s' if cluster.size != 1 else ''}" if cluster.size is not None else "size ?"
    if cluster.expected_size is not None:
        size += f" of {cluster.expected_size} expected"
    healthy = cluster.status == "Primary" and cluster.state == "Synced" and cluster.ready
    text = f"galera {cluster.status}, {cluster.state}, {'ready' if cluster.ready else 'not ready'}, {size}"
    return str(style.SUCCESS(text) if healthy else style.ERROR(text))


def _write_access_text(access: WriteAccess, style: Any) -> str:
    if not access.can_write:
        return f'role "{access.role}" cannot write: read-only whatever the session does'
    return str(style.WARNING(f'role "{access.role}" can write')) + " (" + "; ".join(access.via) + ")"


def _show(value: str | bool | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "(not set)" if value is None else value


def _tls_text(tls: TlsReport | None, style: Any) -> str:
    if tls is None:
        return "not applicable"
    if not tls.in_use:
        mode = f" (mode {tls.mode})" if tls.mode else ""
        return str(style.WARNING("not in use")) + mode
    verified = "certificate verified" if tls.verified else style.WARNING("certificate NOT verified")
    mode = f", mode {tls.mode}" if tls.mode else ""
    return f"{tls.version} {tls.cipher}, {verified}{mode}"


def _schemas_text(schemas: SchemaReport, style: Any) -> str:
    text = ", ".join(schemas.expected)
    if schemas.missing:
        text += "  " + style.ERROR("missing: " + ", ".join(schemas.missing))
    if schemas.created:
        text += "  " + style.SUCCESS("created: " + ", ".join(schemas.created))
    return text


def _problem_lines(problem: Problem, style: Any, pad: str) -> list[str]:
    paint = style.ERROR if problem.level == "error" else style.WARNING
    lines = [f"{pad}{paint(problem.level.upper())} {problem.id}: {problem.message}"]
    if problem.hint:
        lines.append(f"{pad}    HINT: {problem.hint}")
    return lines
