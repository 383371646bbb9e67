"""SQLite probe: a local file, so no TLS and no schemas; the busy timeout is read back."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.db.utils import load_backend

from django_dbconfig.backends.base.probe import (
    Expected,
    ProbeSpec,
    SessionHealth,
    compare_duration,
    fetch_one,
    round_trip_ms,
)
from django_dbconfig.core import problems
from django_dbconfig.core.report import AliasReport


def load(spec: ProbeSpec) -> None:

    load_backend(spec.settings["ENGINE"])


def expected_from_config(values: Mapping[str, Any], entry: Mapping[str, Any]) -> Expected:
    if "lock_timeout" in values:
        return Expected(durations={"lock_timeout": values["lock_timeout"]})
    return Expected()


def expected_from_settings(entry: Mapping[str, Any]) -> Expected:
    timeout = (entry.get("OPTIONS") or {}).get("timeout")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return Expected(durations={"lock_timeout": round(timeout * 1000)})
    return Expected()


def _is_file(name: str) -> bool:
    return bool(name) and name != ":memory:" and not name.startswith("file:") and "mode=memory" not in name


def probe(spec: ProbeSpec) -> AliasReport:
    """Open the file as Django would, unless it does not exist yet: dbcheck creates nothing."""

    report = AliasReport(spec.alias, "sqlite", tls=None)
    name = str(spec.settings.get("NAME") or "")
    if _is_file(name) and not Path(name).exists():
        spec.mark_connected()
        report.server_version = sqlite3.sqlite_version
        directory = Path(name).parent
        if directory.is_dir():
            owner = spec.file_owner
            shared = f' It is the file of "{owner}": migrate that alias, not this one.' if owner else ""
            report.add(
                problems.problem(
                    problems.W102,
                    f"The database file {name} does not exist yet; it is created on first use.{shared}",
                    alias=owner or spec.alias,
                )
            )
        else:
            report.error = f"The directory of the database file {name} does not exist."
            report.add(problems.problem(problems.E101, report.error, alias=spec.alias))
        return report

    wrapper = load_backend(spec.settings["ENGINE"]).DatabaseWrapper(spec.settings, spec.alias)
    connection = wrapper.get_new_connection(wrapper.get_connection_params())
    spec.mark_connected()
    try:
        report.server_version = str(connection.execute("SELECT sqlite_version()").fetchone()[0])
        report.latency_ms = round_trip_ms(connection.cursor())
        if "lock_timeout" in spec.expected.durations:
            actual = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
            compare_duration(report, "lock_timeout", spec.expected.durations["lock_timeout"], actual)
    finally:
        connection.close()
    return report


def session_health(connection: Any, cursor: Any) -> SessionHealth:
    """SQLite is a local file: read-only only through `PRAGMA query_only`; no TLS."""
    (query_only,) = fetch_one(cursor, "PRAGMA query_only")
    return SessionHealth(read_only=bool(query_only))


def replication_status(cursor: Any) -> tuple[bool, float | None]:
    """A SQLite "replica" is its primary's own file: never a standby, never behind."""
    return False, 0.0
