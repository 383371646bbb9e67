"""What every live probe shares: what is expected of an alias, TLS levels, scrubbing secrets."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

from django_dbconfig.backends.base.settings import is_loopback
from django_dbconfig.core import problems
from django_dbconfig.core.durations import format_duration
from django_dbconfig.core.keys import MASK, SSLMODES, is_secret_option
from django_dbconfig.core.report import AliasReport, ReplicationReport, SettingCheck, WriteAccess

# Seconds allowed beyond a timeout for the driver to give up by itself and report why.
MARGIN = 0.5

# keys.SSLMODES runs weakest first: a level asked for must be reached or it is an error.
REQUIRE = SSLMODES.index("require")

DURATION_SETTINGS = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


@dataclass(frozen=True)
class Expected:
    """What the configuration asks of an alias, as the probe compares it with the server."""

    sslmode: str | None = None
    search_path: tuple[str, ...] | None = None
    durations: Mapping[str, int] = field(default_factory=dict)  # milliseconds
    application_name: str | None = None
    read_only: bool | None = None
    replica_of: str | None = None  # the primary, for a replica
    max_replica_lag: int | None = None  # milliseconds
    sync_wait: int | None = None  # Galera's wsrep_sync_wait mask
    cluster_size: int | None = None  # the nodes a Galera cluster should have


@dataclass
class ProbeSpec:
    """One alias to probe: its normalised DATABASES entry and what is expected of it."""

    alias: str
    vendor: str
    settings: dict[str, Any]
    expected: Expected
    timeout: float
    require_tls: bool = False
    create_schemas: bool = False
    # The configured backend ("mariadb"), shown for an alias that cannot be reached.
    backend: str | None = None
    # For a SQLite alias whose file is another alias's (a replica, a mirror): that alias,
    # the one to migrate. Migrating this one would mark migrations applied in the shared file.
    file_owner: str | None = None
    # The entry to create schemas with (the alias's migrate keys, not read-only), if it has one.
    admin: dict[str, Any] | None = None
    # Set by the probe once the server has accepted the connection: the deadline changes.
    connected: threading.Event = field(default_factory=threading.Event)
    connected_at: float | None = None

    def mark_connected(self) -> None:
        self.connected_at = time.monotonic()
        self.connected.set()

    @property
    def whole_seconds(self) -> int:
        return max(1, math.ceil(self.timeout))


def fetch_one(cursor: Any, sql: str, params: Any = None) -> Any:
    if params is None:
        cursor.execute(sql)  # sqlite3 refuses None for "no parameters"
    else:
        cursor.execute(sql, params)
    return cursor.fetchone()


def round_trip_ms(cursor: Any, *, samples: int = 3) -> float:
    """The best of a few `SELECT 1` round trips, in milliseconds: the least noisy figure."""
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        fetch_one(cursor, "SELECT 1")
        timings.append(time.perf_counter() - start)
    return round(min(timings) * 1000, 2)


def level(mode: str | None) -> int:
    return SSLMODES.index(mode) if mode in SSLMODES else -1


def secrets_of(settings: Mapping[str, Any]) -> list[str]:
    """Every secret value of a DATABASES entry, for scrubbing driver messages."""
    found: list[str] = []
    if settings.get("PASSWORD"):
        found.append(str(settings["PASSWORD"]))

    def walk(mapping: Mapping[str, Any]) -> None:
        for key, value in mapping.items():
            if isinstance(value, Mapping):
                walk(value)
            elif is_secret_option(str(key)) and value:
                found.append(str(value))

    walk(settings.get("OPTIONS") or {})
    return found


_CONNINFO_SECRET = re.compile(
    r"""(?ix)\b(password|passwd|pwd|sslpassword)(\s*[=:]\s*)"""
    # MySQL's "(using password: YES)" says whether one was sent, not what it is: kept.
    r"""(?!(?:YES|NO)\))('(?:[^'\\]|\\.)*'|"[^"]*"|[^\s,;)]+)"""
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/@\s:]*):([^@\s]*)@")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove passwords from a driver's message, even one that repeats the connection string."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        # A very short secret would mangle every message; the patterns below still catch it.
        if len(secret) < 4:
            continue
        for variant in {secret, quote(secret, safe=""), quote_plus(secret), repr(secret)[1:-1]}:
            text = text.replace(variant, MASK)
    text = _CONNINFO_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _URL_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)


def compare_duration(
    report: AliasReport, name: str, expected_ms: int, actual_ms: int | None, *, actual_text: str | None = None
) -> None:
    """Record a timeout read back from the server; a difference is an error."""

    ok = actual_ms == expected_ms
    actual = (
        actual_text
        if actual_text is not None
        else (None if actual_ms is None else format_duration(actual_ms))
    )
    report.settings[name] = SettingCheck(format_duration(expected_ms), actual, ok)
    if not ok:
        report.add(
            problems.problem(
                problems.E109,
                f"{name} is {actual} on the server, but {format_duration(expected_ms)} is configured.",
                alias=report.alias,
                setting=name,
            )
        )


def compare_text(report: AliasReport, name: str, expected: str, actual: str | None) -> None:

    ok = expected == actual
    report.settings[name] = SettingCheck(expected, actual, ok)
    if not ok:
        report.add(
            problems.problem(
                problems.E109,
                f"{name} is {actual!r} on the server, but {expected!r} is configured.",
                alias=report.alias,
                setting=name,
            )
        )


def compare_read_only(report: AliasReport, expected: bool | None, actual: bool) -> None:
    """Read-only in effect is always reported; a difference from the configured value is an error."""

    ok = expected is None or expected == actual
    report.settings["read_only"] = SettingCheck(expected, actual, ok)
    if not ok:
        what = "is not read-only" if expected else "is read-only"
        report.add(
            problems.problem(
                problems.E110,
                f"The session {what}, but read_only is {_onoff(bool(expected))} in the configuration.",
                alias=report.alias,
            )
        )


def check_write_access(report: AliasReport, access: WriteAccess) -> None:
    """Report whether a read-only alias's role can write; W104 when it can."""
    report.write_access = access
    if not access.can_write:
        return
    fix = "run " + " ".join(f"{statement};" for statement in access.fix) + " " if access.fix else ""
    report.add(
        problems.problem(
            problems.W104,
            f'The role "{access.role}" can write ({"; ".join(access.via)}): read-only rests on '
            "the session's setting alone, which SQL can lift.",
            alias=report.alias,
            fix=fix,
        )
    )


# How many tables or schemas a W104 message names before it counts the rest.
SHOWN = 3


def named(things: list[str], what: str) -> str:
    """`what "a", "b", "c" and 4 more` for a list of quoted names."""
    shown = ", ".join(things[:SHOWN])
    more = f" and {len(things) - SHOWN} more" if len(things) > SHOWN else ""
    return f"{what} {shown}{more}"


def _onoff(value: bool) -> str:
    return "true" if value else "false"


def check_tls(report: AliasReport, spec: ProbeSpec, *, effective_mode: str | None) -> None:
    """Compare the TLS reached with the TLS asked for (by the config or the driver's mode)."""

    tls = report.tls
    if tls is None:
        return
    asked = spec.expected.sslmode
    wanted = asked if level(asked) >= level(effective_mode) else effective_mode
    if effective_mode is not None and asked is not None and level(effective_mode) < level(asked):
        report.add(
            problems.problem(
                problems.E104,
                f"sslmode {asked} is configured, but the driver connected with {effective_mode}.",
                alias=spec.alias,
            )
        )
    elif level(wanted) >= REQUIRE and not tls.in_use:
        report.add(
            problems.problem(
                problems.E103,
                f"sslmode {wanted} asks for TLS, but the server reports this session as not encrypted.",
                alias=spec.alias,
            )
        )
    elif level(wanted) > REQUIRE and not tls.verified:
        report.add(
            problems.problem(
                problems.E104,
                f"sslmode {wanted} asks for a verified server certificate, but the driver did not verify it.",
                alias=spec.alias,
            )
        )
    if spec.require_tls and not tls.in_use:
        report.add(
            problems.problem(problems.E105, "--require-tls: this session is not encrypted.", alias=spec.alias)
        )
    elif (
        asked in ("allow", "prefer")
        and not tls.in_use
        and not all(is_loopback(host) for host in str(spec.settings.get("HOST") or "").split(","))
    ):
        # Only when asked for: libpq's own default (prefer) is nobody's decision; and, as the
        # static W002, not on loopback, where plain text never leaves the machine.
        report.add(
            problems.problem(
                problems.W101,
                f"sslmode {asked} allows TLS, but this session is not encrypted.",
                alias=spec.alias,
            )
        )


def check_replication(report: AliasReport, spec: ProbeSpec, *, standby: bool, lag_s: float | None) -> None:
    """Record a replica's standby state and lag; a writable server or too much lag is an error."""
    primary = spec.expected.replica_of
    if primary is None:
        return
    limit_ms = spec.expected.max_replica_lag
    max_lag_s = None if limit_ms is None else limit_ms / 1000
    lag = None if lag_s is None else round(lag_s, 3)
    report.replication = ReplicationReport(primary, standby, lag if standby else None, max_lag_s)
    if not standby:
        report.add(
            problems.problem(
                problems.E120,
                f'"{spec.alias}" is a replica of "{primary}", but its server is a writable primary, '
                "not a standby.",
                alias=spec.alias,
                primary=f'"{primary}"',
            )
        )
    elif lag is None:
        report.add(
            problems.problem(
                problems.W120,
                "The server is a standby, but its replication lag cannot be measured "
                "(replication stopped, or its status is not readable).",
                alias=spec.alias,
            )
        )
    elif max_lag_s is not None and lag > max_lag_s:
        report.add(
            problems.problem(
                problems.E121,
                f"The standby lags {lag:g} s behind, more than max_replica_lag "
                f"({format_duration(limit_ms or 0)}).",
                alias=spec.alias,
            )
        )


@dataclass(frozen=True)
class SessionHealth:
    """What the health endpoint reads from an open session, in one or two round trips."""

    read_only: bool
    tls_in_use: bool | None = None  # None: not applicable (SQLite)
    tls_version: str | None = None
    tls_cipher: str | None = None
    replica_lag_s: float | None = None
