"""dbcheck: every alias's live probe at once, and the report with routing and static problems.

Each server family's probe is its `backends/<family>/probe.py`.

Every alias is probed in its own daemon thread at the same time. A probe that
has not connected within the alias's connect timeout (plus a small margin), or
has not finished within the same time once connected, is abandoned and reported
as timed out: a server that accepts TCP and never answers cannot hang dbcheck.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from django.db import connections

from django_dbconfig.backends import connect_timeout, probe_module, vendor_of
from django_dbconfig.backends.base.probe import MARGIN, ProbeSpec, scrub, secrets_of
from django_dbconfig.backends.mysql.settings import TLS_GUARD
from django_dbconfig.checks.expected import configured_backend, expected_for
from django_dbconfig.checks.static import configured_aliases, routing_problems, static_problems
from django_dbconfig.core import problems
from django_dbconfig.core.errors import DbConfigError, did_you_mean, one_of
from django_dbconfig.core.report import AliasReport, Report
from django_dbconfig.operations.admin import admin_settings, over

logger = logging.getLogger(__name__)


def databases_now() -> dict[str, Any]:
    """A copy of every alias's settings, to iterate while runtime aliases come and go.

    Runtime databases change `connections.settings` in place from other threads; copying a
    dict is one step for the interpreter, so the copy is never half-changed.
    """
    return dict(connections.settings)


def probe_aliases(
    aliases: Sequence[str],
    *,
    timeout: float | None = None,
    require_tls: bool = False,
    create_schemas: bool = False,
) -> Report:
    """Probe the aliases at once, each bounded by its timeout."""
    settings = databases_now()
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


def _admin_entry(alias: str) -> dict[str, Any] | None:
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
    module = probe_module(spec.vendor)
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
    elif (option := refused_option(message)) is not None:
        # The driver refused an OPTIONS entry: the credentials are not the problem.
        report.add(
            problems.problem(
                problems.E117,
                f"The driver refused options.{option}: {message}",
                alias=spec.alias,
                option=option,
            )
        )
    else:
        report.add(problems.problem(problems.E101, f"Cannot connect: {message}", alias=spec.alias))
    return report


# How libpq and mysqlclient name a connection option they do not know.
_REFUSED_OPTION = re.compile(
    r'invalid connection option "([^"]+)"|\'([A-Za-z_][A-Za-z0-9_]*)\' is an invalid keyword argument'
)


def refused_option(message: str) -> str | None:
    """The OPTIONS entry a driver error names as unknown, or None."""
    match = _REFUSED_OPTION.search(message)
    return (match.group(1) or match.group(2)) if match else None


def timed_out(spec: ProbeSpec, elapsed: float) -> AliasReport:

    phase = "stopped answering after connecting" if spec.connected.is_set() else "did not answer"
    message = f"timed out: the server {phase} within {spec.timeout:g} s (waited {elapsed:.1f} s)."
    logger.info("dbcheck: %s %s", spec.alias, message)
    report = AliasReport(spec.alias, spec.backend or spec.vendor, error=message, elapsed_s=round(elapsed, 3))
    report.add(problems.problem(problems.E102, message[0].upper() + message[1:], alias=spec.alias))
    return report


def verify(
    aliases: Sequence[str],
    *,
    timeout: float | None = None,
    require_tls: bool = False,
    create_schemas: bool = False,
) -> Report:
    """dbcheck's report: the live probes of `aliases`, plus routing and static problems."""
    settings = databases_now()
    report = probe_aliases(aliases, timeout=timeout, require_tls=require_tls, create_schemas=create_schemas)
    report.problems.extend(routing_problems(configured_aliases(settings)))
    by_alias = {db.alias: db for db in report.databases}
    for where, found in static_problems(settings):
        if where is None:
            report.problems.append(found)
        elif where in by_alias:
            by_alias[where].problems.append(found)
    return report


def check_databases(
    aliases: Iterable[str] | None = None,
    *,
    timeout: float | None = None,
    require_tls: bool = False,
    create_schemas: bool = False,
) -> dict[str, Any]:
    """dbcheck's report, as `dbcheck --format json` prints it, for these aliases (default: all).

    Works for aliases of DATABASES and runtime ones alike: a provisioning flow can
    check a tenant's database (reachable, schemas present, settings in effect)
    before using it. `create_schemas=True` creates missing search_path schemas.
    """
    known = list(connections)
    wanted = [aliases] if isinstance(aliases, str) else list(aliases if aliases is not None else known)
    for alias in wanted:
        if alias not in known:
            raise DbConfigError(
                f'check_databases(): there is no alias "{alias}". Known aliases: {one_of(known)}.'
                + did_you_mean(alias, known)
            )
    report = verify(
        list(dict.fromkeys(wanted)),
        timeout=timeout,
        require_tls=require_tls,
        create_schemas=create_schemas,
    )
    result: dict[str, Any] = report.as_json()
    return result
