"""Live probes: one module per backend, each opening its own connection to one alias.

Every alias is probed in its own daemon thread at the same time. A probe that
has not connected within the alias's connect timeout (plus a small margin), or
has not finished within the same time once connected, is abandoned and reported
as timed out: a server that accepts TCP and never answers cannot hang dbcheck.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from .. import problems
from ..backends.mysql import TLS_GUARD
from ..report import AliasReport, Problem, Report
from .base import Expected, ProbeSpec, scrub, secrets_of

logger = logging.getLogger(__name__)

# Seconds allowed beyond a timeout for the driver to give up by itself and report why.
MARGIN = 0.5
DEFAULT_TIMEOUT = 5.0


def _module(vendor: str) -> ModuleType:
    from . import mysql, postgresql, sqlite

    modules: dict[str, ModuleType] = {"postgresql": postgresql, "mysql": mysql, "sqlite": sqlite}
    return modules[vendor]


def vendor_of(entry: Mapping[str, Any]) -> str:
    """Django's vendor family of a DATABASES entry, from its ENGINE, without a connection."""
    engine = str(entry.get("ENGINE", ""))
    for vendor, words in (
        ("postgresql", ("postgres", "postgis", "psycopg")),
        ("mysql", ("mysql", "mariadb")),
        ("sqlite", ("sqlite", "spatialite")),
    ):
        if any(word in engine for word in words):
            return vendor
    return "unknown"


def expected_for(alias: str, entry: Mapping[str, Any]) -> Expected:
    """What is asked of an alias: from the config that built it, else from the entry itself."""
    from ..config import last_config

    vendor = vendor_of(entry)
    if vendor == "unknown":
        return Expected()
    module = _module(vendor)
    from ..runtime import runtime_values

    values = runtime_values(alias)
    if values is not None:
        added: Expected = module.expected_from_config(values, entry)
        return added
    config = last_config()
    if config is not None and alias in config.aliases and _same_server(config.databases()[alias], entry):
        values = config.values(alias)
        result: Expected = module.expected_from_config(values, entry)
        return dataclasses.replace(
            result, replica_of=values.get("replica_of"), max_replica_lag=values.get("max_replica_lag")
        )
    fallback: Expected = module.expected_from_settings(entry)
    # A hand-written replica says which alias it mirrors in TEST.MIRROR.
    mirror = (entry.get("TEST") or {}).get("MIRROR")
    return dataclasses.replace(fallback, replica_of=str(mirror) if mirror else None)


def _same_server(built: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether DATABASES still holds the entry the config built (not replaced since)."""
    return all(
        str(built.get(key) or "") == str(entry.get(key) or "")
        for key in ("ENGINE", "NAME", "HOST", "PORT", "USER")
    )


def connect_timeout(vendor: str, entry: Mapping[str, Any]) -> float:
    """The alias's own connect timeout in seconds (OPTIONS.connect_timeout), else 5."""
    options = entry.get("OPTIONS") or {}
    value = options.get("connect_timeout") if vendor != "sqlite" else options.get("timeout")
    try:
        seconds = float(value) if value is not None else DEFAULT_TIMEOUT
    except (TypeError, ValueError):
        seconds = DEFAULT_TIMEOUT
    return seconds if seconds > 0 else DEFAULT_TIMEOUT


def probe_aliases(
    aliases: Sequence[str],
    *,
    timeout: float | None = None,
    require_tls: bool = False,
    create_schemas: bool = False,
) -> Report:
    """Probe the aliases at once, each bounded by its timeout."""
    from django.db import connections

    settings = connections.settings
    specs = []
    for alias in aliases:
        entry = copy.deepcopy(settings[alias])
        vendor = vendor_of(entry)
        specs.append(
            ProbeSpec(
                alias=alias,
                vendor=vendor,
                settings=entry,
                expected=expected_for(alias, entry),
                timeout=timeout if timeout is not None else connect_timeout(vendor, entry),
                require_tls=require_tls,
                create_schemas=create_schemas,
                backend=configured_backend(alias, entry),
                file_owner=file_owner(alias, settings) if vendor == "sqlite" else None,
                admin=_admin_entry(alias) if create_schemas else None,
            )
        )
    return Report(run(specs), [])


def file_owner(alias: str, settings: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The alias that owns `alias`'s SQLite file when it is not `alias` itself.

    That is the alias it mirrors in tests (a replica), else the first alias that
    is not a mirror and names the same file.
    """
    entry = settings[alias]
    mirror = (entry.get("TEST") or {}).get("MIRROR")
    if mirror and mirror != alias and mirror in settings:
        return str(mirror)
    name = str(entry.get("NAME") or "")
    for other, other_entry in settings.items():
        if other == alias:
            return None
        if str(other_entry.get("NAME") or "") == name and not (other_entry.get("TEST") or {}).get("MIRROR"):
            return str(other)
    return None


def configured_backend(alias: str, entry: Mapping[str, Any]) -> str | None:
    """The backend the config chose for `alias` ("mariadb"), if DATABASES still holds its entry."""
    from ..config import last_config

    config = last_config()
    if config is not None and alias in config.aliases and _same_server(config.databases()[alias], entry):
        return config.vendors[alias]
    return None


def _admin_entry(alias: str) -> dict[str, Any] | None:
    from django.db import connections

    from ..operations import admin_settings, over

    admin = admin_settings(alias)
    return copy.deepcopy(over(connections.settings[alias], admin)) if admin is not None else None


class _Run:
    """One probe in its thread: the result lands here when (if) it finishes."""

    def __init__(self, spec: ProbeSpec, target: Callable[[ProbeSpec], AliasReport]) -> None:
        self.spec = spec
        self.result: AliasReport | None = None
        self.done = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(
            target=self._run, args=(target,), daemon=True, name=f"dbcheck-{spec.alias}"
        )

    def _run(self, target: Callable[[ProbeSpec], AliasReport]) -> None:
        try:
            self.result = target(self.spec)
        except BaseException as exc:
            self.result = failed(self.spec, exc)
        finally:
            self.done.set()

    def deadline(self) -> float:
        # Connecting is bounded by the connect timeout; so is the rest, counted from the connection.
        connected_at = self.spec.connected_at
        return (connected_at if connected_at is not None else self.started) + self.spec.timeout + MARGIN


def run(specs: Sequence[ProbeSpec]) -> list[AliasReport]:
    """Run every probe at once; each is abandoned at its own deadline."""
    runs = [_Run(spec, _target(spec)) for spec in specs]
    for item in runs:
        item.thread.start()
    for item in runs:
        while not item.done.is_set():
            remaining = item.deadline() - time.monotonic()
            if remaining <= 0:
                break
            item.done.wait(min(remaining, 0.05))
    return [
        item.result if item.result is not None else timed_out(item.spec, time.monotonic() - item.started)
        for item in runs
    ]


def _target(spec: ProbeSpec) -> Callable[[ProbeSpec], AliasReport]:
    if spec.vendor == "unknown":
        return _unsupported
    module = _module(spec.vendor)
    # Import the driver here, in one thread, not in every probe thread at once.
    try:
        module.load(spec)
    except Exception as exc:  # a missing driver fails this alias only (and is E002 as well)
        error = exc

        def missing(spec: ProbeSpec) -> AliasReport:
            raise error

        return missing
    probe: Callable[[ProbeSpec], AliasReport] = module.probe
    return probe


def _unsupported(spec: ProbeSpec) -> AliasReport:

    report = AliasReport(spec.alias, "unknown")
    report.error = f"dbcheck has no probe for ENGINE {spec.settings.get('ENGINE')!r}."
    report.add(problems.problem(problems.E101, report.error, alias=spec.alias))
    return report


def failed(spec: ProbeSpec, exc: BaseException) -> AliasReport:
    """The report of an alias whose probe raised: the message scrubbed of every secret."""

    message = scrub(f"{type(exc).__name__}: {exc}".strip(), secrets_of(spec.settings))
    logger.info("dbcheck: %s failed: %s", spec.alias, message)
    report = AliasReport(spec.alias, spec.backend or spec.vendor)
    report.error = message
    if TLS_GUARD in message:
        # The MySQL backend's init_command refused the session on the server: no TLS.
        report.add(
            problems.problem(
                problems.E103,
                f"sslmode {spec.expected.sslmode} asks for TLS, but the "
                "server refused this session as not encrypted.",
                alias=spec.alias,
            )
        )
    elif "timeout" in type(exc).__name__.lower() or "timeout expired" in message or "handshake" in message:
        # The driver gave up by itself within the connect timeout: the server did not answer.
        report.add(
            problems.problem(
                problems.E102, f"No answer within {spec.timeout:g} s: {message}", alias=spec.alias
            )
        )
    else:
        report.add(problems.problem(problems.E101, f"Cannot connect: {message}", alias=spec.alias))
    return report


def timed_out(spec: ProbeSpec, elapsed: float) -> AliasReport:

    phase = "stopped answering after connecting" if spec.connected.is_set() else "did not answer"
    message = f"timed out: the server {phase} within {spec.timeout:g} s (waited {elapsed:.1f} s)."
    logger.info("dbcheck: %s %s", spec.alias, message)
    report = AliasReport(spec.alias, spec.backend or spec.vendor, error=message, elapsed_s=round(elapsed, 3))
    report.add(problems.problem(problems.E102, message[0].upper() + message[1:], alias=spec.alias))
    return report


__all__ = ["Expected", "ProbeSpec", "Problem", "expected_for", "probe_aliases", "run", "vendor_of"]
